"""Cell specs built from the paper config: what each row's recipe decides (bins, selection episodes, seeds); the typed
specs: JSON round trips, defaults, BAM's base classes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from svf.errors import ConfigError
from svf.pipeline.cells import Cell
from svf.pipeline.recipe import Recipe
from svf.pipeline.spec_types import BaseLearnerSpec, CellSpec, DataSpec, PretrainSpec
from svf.pipeline.specs import base_learner_spec, build_base_learner_spec, build_cell_spec, cell_spec, pretrain_spec

ROOT = Path(__file__).resolve().parents[2]
PAPER = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def test_pfenet_original_rows_use_pfenets_bins_and_selection_episodes():
    row = Cell("coco", "vgg16", "pfenet", "original", "frozen-bntrain", "pfenet-original", 1, 0)
    spec = cell_spec(PAPER, row)
    assert spec["model"]["options"]["bins"] == [1.0, 0.5, 0.25, 0.125]  # PFENet's coco_split*_vgg.yaml ppm_scales
    assert spec["recipe"]["val_episodes"] == 20000  # its validate(): test_num = 20000 on COCO
    svf_code = cell_spec(PAPER, Cell("coco", "vgg16", "pfenet", "dagger", "frozen", "svf-code", 1, 0))
    assert svf_code["model"]["options"]["bins"] == [60, 30, 15, 8] and svf_code["recipe"]["val_episodes"] == 1000
    pascal = cell_spec(PAPER, Cell("pascal", "resnet50", "pfenet", "original", "frozen", "pfenet-original", 1, 0))
    assert pascal["model"]["options"]["bins"] == [60, 30, 15, 8] and pascal["recipe"]["val_episodes"] == 5000
    baseline = cell_spec(PAPER, Cell("coco", "vgg16", "baseline", "original", "frozen", "pfenet-original", 1, 0))
    assert "bins" not in baseline["model"]["options"]  # bins are PFENet's only


def test_the_seed_trains_and_the_validation_episodes_stay():
    a = cell_spec(PAPER, Cell("pascal", "resnet50", "baseline", "dagger", "svf", "svf-code", 1, 0, seed=5))
    b = cell_spec(PAPER, Cell("pascal", "resnet50", "baseline", "dagger", "svf", "svf-code", 1, 0))
    assert (a["cell"]["seed"], b["cell"]["seed"]) == (5, 321) and a["val_seed"] == b["val_seed"] == 321
    assert a["cell_id"].endswith("/fold0/seed5") and b["cell_id"].endswith("/fold0/seed321")
    assert Cell.from_mapping({**a["cell"]}).id == a["cell_id"]


def test_a_spec_round_trips_through_json_and_holds_its_seed_once():
    for cell in (Cell("coco", "vgg16", "bam", "dagger", "svf", "svf-code", 5, 2, seed=7),
                 Cell("pascal", "resnet50", "pfenet", "original", "frozen", "pfenet-original", 1, 0)):
        spec = cell_spec(PAPER, cell)
        typed = CellSpec.from_json(spec)
        assert typed.to_json() == spec and CellSpec.from_json(json.loads(json.dumps(spec))) == typed
        assert typed.seed == cell.seed and "seed" not in spec and typed.cell_id == cell.id
    base = base_learner_spec(PAPER, "coco", "resnet50", 1)
    assert BaseLearnerSpec.from_json(base).to_json() == base
    pretrain = pretrain_spec(PAPER, "vgg16", world_seed=4)
    assert PretrainSpec.from_json(pretrain).to_json() == pretrain and pretrain["seed"] == 4


def test_the_stand_in_pretraining_draws_the_worlds_looks():
    from svf.synthetic.objects import ObjectImages

    assert pretrain_spec(PAPER, "resnet50")["looks"] == "shared"  # absent from the config: the demo's looks
    private = {**PAPER, "data": {**PAPER["data"], "synthetic": {"looks": "fold_private"}}}
    spec = PretrainSpec.from_json(pretrain_spec(private, "resnet50"))
    assert spec.looks == "fold_private"
    a, b = ObjectImages(80, 32, 40, seed=1), ObjectImages(80, 32, 40, seed=1, looks=spec.looks)
    pascal = [i for i in range(40) if a[i]["label"] < 20]
    coco = [i for i in range(40) if a[i]["label"] >= 20]
    assert pascal and coco and [a[i]["label"] for i in range(40)] == [b[i]["label"] for i in range(40)]
    assert all(not (a[i]["image"] == b[i]["image"]).all() for i in pascal)  # PASCAL's 20 redrawn
    assert all((a[i]["image"] == b[i]["image"]).all() for i in coco)  # COCO's other 60 as before


def test_bam_gets_its_base_classes_from_the_data_settings():
    bam = build_cell_spec(PAPER, Cell("coco", "resnet50", "bam", "dagger", "svf", "svf-code", 1, 1))
    assert bam.model.base_classes == tuple(c for c in range(1, 81) if c % 4 != 2)  # interleaved: novel 2, 6, ...
    contiguous = build_cell_spec({**PAPER, "data": {**PAPER["data"], "coco_split": "contiguous"}},
                                 Cell("coco", "resnet50", "bam", "dagger", "svf", "svf-code", 1, 1))
    assert contiguous.model.base_classes == tuple(c for c in range(1, 81) if not 21 <= c <= 40)
    assert contiguous.model.base_learner().base_classes == contiguous.model.base_classes
    assert build_base_learner_spec(PAPER, "coco", "resnet50", 1).model.base_classes == bam.model.base_classes
    baseline = build_cell_spec(PAPER, Cell("coco", "resnet50", "baseline", "dagger", "svf", "svf-code", 1, 1))
    assert baseline.model.base_classes is None and "base_classes" not in baseline.model.kwargs()


def test_defaults_fill_what_the_config_leaves_out_and_unknown_keys_are_refused():
    config = {**PAPER, "data": {"source": "download"}, "evaluation": {}}
    spec = build_cell_spec(config, Cell("pascal", "resnet50", "baseline", "dagger", "svf", "svf-code", 1, 0))
    assert spec.data == DataSpec() and (spec.data.coco_split, spec.data.exif_orientation) == ("interleaved", "apply")
    assert (spec.evaluation.protocol, spec.evaluation.batch_size, spec.evaluation.absent_class) == ("svf-code", 8,
                                                                                                    "zero")
    assert spec.recipe.rotate == (-10.0, 10.0) and spec.recipe.val_source == "test"
    with pytest.raises(ConfigError, match="unknown keys \\['epochz'\\]"):
        Recipe.from_json({**spec.recipe.to_json(), "epochz": 3})
    with pytest.raises(ConfigError, match="missing \\['crop'\\]"):
        Recipe.from_json({k: v for k, v in spec.recipe.to_json().items() if k != "crop"})
    with pytest.raises(ConfigError, match="is not its cell's id"):
        CellSpec.from_json({**spec.to_json(), "cell_id": "pascal/other"})
