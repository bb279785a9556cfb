"""Path templates: one layout for the workflow, the engine and the reports; what a cell reads."""
from __future__ import annotations

import pytest

from svf.data.download import GROUPS, REGISTRY, weights_artifact
from svf.pipeline import paths
from svf.pipeline.cells import WILDCARDS, cell_id

CELL = {"dataset": "coco", "backbone": "vgg16", "method": "pfenet", "setting": "original", "policy": "svf",
        "recipe": "pfenet-paper", "shot": 1, "fold": 2, "seed": 7}


def test_cell_files_live_in_the_cell_directory_named_by_its_id():
    assert paths.CELL_DIR.format(**CELL) == f"<results>/cells/{cell_id(CELL)}"
    assert paths.cell_file(CELL, paths.METRICS) == f"{paths.CELL_DIR.format(**CELL)}/metrics.json"
    assert paths.cell_file(WILDCARDS, paths.MODEL) == f"{paths.CELL_DIR}/model.pt"  # the rules' pattern
    # checkpoints outside the cell directory: Snakemake deletes a failed job's outputs, the rerun resumes
    assert not paths.CELL_CHECKPOINTS.format(**CELL).startswith(paths.CELL_DIR.format(**CELL))
    assert paths.benchmark_file("train", CELL) == f"<benchmarks>/train/{cell_id(CELL)}.tsv"
    assert paths.benchmark_name("evaluate", cell_id(CELL)) == f"evaluate/{cell_id(CELL)}.tsv"


def test_a_cell_reads_its_dataset_splits_and_weights_and_bam_its_base_learner():
    inputs = paths.inputs_of_cell(CELL)
    assert inputs == {"dataset": "<resources>/data/coco/dataset.json",
                      "splits": "<resources>/splits/coco/splits_summary.json",
                      "weights": "<resources>/weights/vgg16.pth"}
    bam = paths.inputs_of_cell({**CELL, "method": "bam"})
    assert bam["base_learner"] == "<resources>/base_learners/coco/vgg16/fold2/model.pt"


def test_templates_name_only_the_rules_wildcards():
    import string

    wildcards = {"dataset", "backbone", "fold", "table", "artifact", *WILDCARDS}
    templates = {name: value for name, value in vars(paths).items()
                 if name.isupper() and isinstance(value, str) and name != "CELL_ID_FORMAT"}  # (imported: relative)
    templates.update({f"TABLE_FILES[{i}]": t for i, t in enumerate(paths.TABLE_FILES)})
    assert len(templates) > 25
    for name, template in templates.items():
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f}
        assert fields <= wildcards, (name, fields - wildcards)
        # under a path variable, a file of the repository's config/ (the paper's numbers), or a bare file name
        assert template.startswith(("<", "config/")) or "/" not in template, name
    assert paths.table_files("table4") == [f"<results>/tables/table4.{e}" for e in ("csv", "md", "tex")]


def test_downloads_and_weights_artifacts_exist_in_the_registry():
    for dataset in ("pascal", "coco"):
        assert paths.raw_downloads(dataset) == [f"<resources>/downloads/{a}.done" for a in GROUPS[dataset]]
    config = {"weights": {"resnet50": "torchvision"}}
    assert paths.imagenet_artifact(config, "resnet50") == "resnet50_torchvision"
    assert weights_artifact("resnet50") == "resnet50_v2" and weights_artifact("vgg16") == "vgg16_bn"
    assert {weights_artifact("resnet50", v) for v in ("resnet50_v2", "torchvision")} | {"vgg16_bn"} <= set(REGISTRY)
    with pytest.raises(ValueError, match="no ImageNet weights"):
        weights_artifact("resnet101")


def test_published_base_learner_follows_bams_initmodel_layout():
    assert paths.published_base_learner("/w/PSPNet/", "pascal", "vgg16", 1) == "/w/PSPNet/pascal/split1/vgg/best.pth"
    assert paths.published_base_learner("/w", "coco", "resnet50", 0) == "/w/coco/split0/resnet50/best.pth"
