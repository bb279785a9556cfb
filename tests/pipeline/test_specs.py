"""Cell specs built from the paper config: what each row's recipe decides (bins, selection episodes, seeds)."""
from __future__ import annotations

from pathlib import Path

import yaml

from svf.pipeline.cells import Cell
from svf.pipeline.specs import cell_spec

ROOT = Path(__file__).resolve().parents[2]
PAPER = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def test_pfenet_original_rows_use_pfenets_bins_and_selection_episodes():
    row = Cell("coco", "vgg16", "pfenet", "original", "frozen-bntrain", "pfenet-original", 1, 0)
    spec = cell_spec(PAPER, row)
    assert spec["model"]["bins"] == [1.0, 0.5, 0.25, 0.125]  # PFENet's coco_split*_vgg.yaml ppm_scales
    assert spec["recipe"]["val_episodes"] == 20000  # its validate(): test_num = 20000 on COCO
    svf_code = cell_spec(PAPER, Cell("coco", "vgg16", "pfenet", "dagger", "frozen", "svf-code", 1, 0))
    assert svf_code["model"]["bins"] == [60, 30, 15, 8] and svf_code["recipe"]["val_episodes"] == 1000
    pascal = cell_spec(PAPER, Cell("pascal", "resnet50", "pfenet", "original", "frozen", "pfenet-original", 1, 0))
    assert pascal["model"]["bins"] == [60, 30, 15, 8] and pascal["recipe"]["val_episodes"] == 5000
    baseline = cell_spec(PAPER, Cell("coco", "vgg16", "baseline", "original", "frozen", "pfenet-original", 1, 0))
    assert "bins" not in baseline["model"]  # bins are PFENet's only


def test_the_seed_trains_and_the_validation_episodes_stay():
    a = cell_spec(PAPER, Cell("pascal", "resnet50", "baseline", "dagger", "svf", "svf-code", 1, 0, seed=5))
    b = cell_spec(PAPER, Cell("pascal", "resnet50", "baseline", "dagger", "svf", "svf-code", 1, 0))
    assert (a["seed"], b["seed"]) == (5, 321) and a["val_seed"] == b["val_seed"] == 321
    assert a["cell_id"].endswith("/fold0/seed5") and b["cell_id"].endswith("/fold0/seed321")
    assert Cell.from_mapping({**a["cell"]}).id == a["cell_id"]
