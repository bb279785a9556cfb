"""svf estimate: kinds of cells and base learners, list sizes, the projection arithmetic (loading, workers, the
validation cache's budget, mid-epoch validation), the timing as training runs it (BatchNorm modes, the SVD copied
between kinds), the budget, the comparison with measured jobs, and a reduced run on this CPU."""
from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
import yaml

from svf.cli import main
from svf.engine.tasks.build import build_cell_model
from svf.engine.tools.estimate import base_learner_kinds, distinct_kinds, estimate
from svf.engine.tools.estimate_report import compare_measured, write_estimate
from svf.engine.tools.projection import COCO_DAGGER_TRAIN_IMAGES, project, train_images
from svf.engine.tools.timing import ModelBuilds, time_kind
from svf.pipeline.cells import Cell
from svf.pipeline.paths import benchmark_name
from svf.pipeline.specs import build_cell_spec

from cells import ROOT, merged_config, tiny_spec

PAPER = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
PASCAL_DAGGER = (4208, 3726, 2752, 4510)  # the authors' published lists


def test_kinds_cover_every_cell_once():
    kinds = distinct_kinds(PAPER, PAPER["tables"]["build"])
    assert sum(k["cells"] for k in kinds) == 316 and len(kinds) == 79
    assert all(len(k["fold_seeds"]) == k["cells"] for k in kinds)
    table4 = distinct_kinds(PAPER, ["table4"])
    assert len(table4) == 4 and all(k["cells"] == 4 for k in table4)
    seeds = distinct_kinds({**PAPER, "tables": {**PAPER["tables"], "seeds": [1, 2]}}, ["table4"])
    assert all(k["cells"] == 8 for k in seeds)


def test_a_study_config_counts_the_primary_rows_extra_seeds():
    # `snakemake study --configfile config/study.yaml` trains 19 rows x 4 folds x 2 seeds plus each primary claim's
    # row on 4 folds x its own extra seeds (docs/study.md, "Sixth design": 6 for frozen and full, 8 for U, 10 for S
    # and V): the estimate must project all 312, not the 152 of tables.seeds alone.
    study = yaml.safe_load((ROOT / "config" / "study.yaml").read_text())
    config = {**PAPER, "tables": {**PAPER["tables"], **study["tables"]}, "study": study["study"]}
    kinds = distinct_kinds(config, config["tables"]["build"])
    assert len(kinds) == 19 and sum(k["cells"] for k in kinds) == 19 * 4 * 2 + (6 + 6 + 8 + 10 + 10) * 4 == 312
    svf_kind = next(k for k in kinds if k["policy"] == "svf")
    assert {s for _, s in svf_kind["fold_seeds"]} == set(range(45, 57)) and len(svf_kind["tables"]) == 5
    u_kind = next(k for k in kinds if k["policy"] == "svf-U")
    assert {s for _, s in u_kind["fold_seeds"]} == set(range(45, 55))
    without = distinct_kinds({**config, "study": {**study["study"], "primary_seeds": []}}, ["table7"])
    assert sum(k["cells"] for k in without) == 7 * 4 * 2
    shared = distinct_kinds({**config, "study": {**study["study"], "primary_seeds": [13, 14]}}, ["table7"])
    assert sum(k["cells"] for k in shared) == 7 * 4 * 2 + 3 * 4 * 2  # svf, svf-U, svf-V: the list serves every one


def test_base_learners_are_timed_only_when_the_dag_trains_them():
    kinds = distinct_kinds(PAPER, PAPER["tables"]["build"])
    assert base_learner_kinds(PAPER, kinds) == []  # the paper config imports BAM's published ones
    trained = base_learner_kinds({**PAPER, "weights": {**PAPER["weights"], "bam_base_learner": "train"}}, kinds)
    assert len(trained) == 4 and sum(len(k["fold_seeds"]) for k in trained) == 16
    assert {(k["dataset"], k["backbone"]) for k in trained} == {(d, b) for d in ("pascal", "coco")
                                                               for b in ("resnet50", "vgg16")}


def test_training_list_sizes_and_where_they_come_from():
    assert train_images("pascal", "dagger", 2, None) == (2752, "published")
    assert train_images("coco", "dagger", 0, None) == (21_917, "published (BAM)")
    assert COCO_DAGGER_TRAIN_IMAGES == (21_917, 41_809, 43_045, 44_614)
    assert train_images("coco", "original", 1, None)[1] == "assumed"
    assert train_images("pascal", "dagger", 0, None, merged_config()) == (160, "synthetic (whole train list)")


def _timing(**changes):
    timing = {"step_s": 0.5, "val_episode_s": 0.01, "cached_val_episode_s": math.nan,
              "cache_bytes_per_episode": math.nan, "build_s": 2.0}
    return {**timing, **changes}


LOADING = {"train_image_s": 0.02, "val_image_s": 0.01}


def test_projection_arithmetic_on_a_gpu_with_loader_workers():
    spec = build_cell_spec(PAPER, Cell("pascal", "resnet50", "baseline", "dagger", "svf", "svf-code", 1, 0))
    kind = {"dataset": "pascal", "setting": "dagger", "shot": 1, "fold_seeds": [(f, 321) for f in range(4)]}
    got = project(kind, _timing(), spec, PAPER, None, LOADING, {"train": 7, "evaluate": 3})
    # loading hides behind the compute: 8 episodes x 2 images x 0.02 s over 7 workers < 0.5 s
    assert got["step_with_loading_s"] == 0.5 and got["validations"] == 200
    test_s = 1000 * 0.01 + 2.0
    train = [2.0 + 200 * (n // 8) * 0.5 + 200 * 1000 * 0.01 for n in PASCAL_DAGGER]
    assert got["hours"] == pytest.approx((sum(train) + 4 * test_s) / 3600)
    assert got["hours_per_cell"] == pytest.approx(got["hours"] / 4)
    assert got["test_hours_per_cell"] == pytest.approx(test_s / 3600)
    kept = (200 / 3 + 75) / 200  # early stop 75 after a best at a third of 200 epochs
    assert got["early_stop_hours"] == pytest.approx((sum(train) * kept + 4 * test_s) / 3600)


def test_projection_on_the_cpu_adds_the_loading_and_frozen_cells_use_the_cache_budget():
    spec = build_cell_spec(PAPER, Cell("pascal", "resnet50", "baseline", "dagger", "frozen", "svf-code", 1, 0))
    kind = {"dataset": "pascal", "setting": "dagger", "shot": 1, "fold_seeds": [(0, 321)]}
    cpu = project(kind, _timing(), spec, PAPER, None, LOADING, {"train": 0, "evaluate": 0})
    assert cpu["step_with_loading_s"] == pytest.approx(0.5 + 8 * 2 * 0.02)
    frozen = _timing(cached_val_episode_s=0.001, cache_bytes_per_episode=44e6)
    got = project(kind, frozen, spec, PAPER, None, LOADING, {"train": 7, "evaluate": 3})
    cached = int(16 * 2**30 // 44e6)  # the 16 GB budget holds 390 of the 1000 episodes
    assert got["cached_episodes"] == cached == 390
    val_s = 1000 * 0.01 + 199 * (cached * 0.001 + (1000 - cached) * 0.01)
    train_s = 2.0 + 200 * (4208 // 8) * 0.5 + val_s
    assert got["train_hours_per_cell"] == pytest.approx(train_s / 3600)
    no_cache = dataclasses.replace(spec, recipe=dataclasses.replace(spec.recipe, val_cache_gb=0))
    assert project(kind, frozen, no_cache, PAPER, None, LOADING, {"train": 7, "evaluate": 3})["hours"] > got["hours"]


def test_coco_validates_mid_epoch_from_the_second_epoch_on():
    spec = build_cell_spec(PAPER, Cell("coco", "resnet50", "baseline", "dagger", "svf", "svf-code", 5, 0))
    kind = {"dataset": "coco", "setting": "dagger", "shot": 5, "fold_seeds": [(0, 321)]}
    got = project(kind, _timing(), spec, PAPER, None, LOADING, {"train": 7, "evaluate": 3})
    assert got["validations"] == 50 + 49 and got["steps_per_epoch"] == 21_917 // 8


def test_timing_runs_batchnorm_as_training_does():
    """Frozen BatchNorms run in eval mode in the timed steps (as in training); -bntrain ones in train mode."""
    for policy, expected in (("svf", False), ("frozen-bntrain", True)):
        spec = tiny_spec(policy=policy, recipe_overrides={"crop": 33, "val_size": 33, "batch_size": 2})
        modes = []
        original = torch.nn.BatchNorm2d.forward

        def recording(self, x, _original=original):
            if torch.is_grad_enabled():
                modes.append(self.training)
            return _original(self, x)
        torch.nn.BatchNorm2d.forward = recording
        try:
            time_kind(spec, torch.device("cpu"), steps=1, warmup=0, val_batches=1)
        finally:
            torch.nn.BatchNorm2d.forward = original
        assert modes and set(modes) == {expected}, policy


def test_a_copied_decomposition_builds_the_same_model():
    builds = ModelBuilds()
    builds.build(tiny_spec(policy="svf"))
    spec = tiny_spec(policy="svf-l34")
    copied, _, _ = builds.build(spec)
    fresh, _ = build_cell_model(spec, None)
    ours, theirs = copied.state_dict(), fresh.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert [n for n, p in copied.named_parameters() if p.requires_grad] == [
        n for n, p in fresh.named_parameters() if p.requires_grad]


def test_a_reduced_estimate_runs_on_the_cpu(tmp_path):
    result = estimate(merged_config(), ["table4"], device="cpu", steps=1, threads=1, progress=lambda line: None)
    assert len(result["rows"]) == 4 and all(r["step_s"] > 0 and r["hours_per_cell"] > 0 for r in result["rows"])
    assert all(r["timed"] == "measured" and r["train_image_s"] > 0 for r in result["rows"])
    frozen = next(r for r in result["rows"] if r["policy"] == "frozen")
    assert frozen["cached_val_episode_s"] < frozen["val_episode_s"] and frozen["cached_episodes"] == 20
    md = write_estimate(result, tmp_path)[1].read_text()
    assert "| table4 | 4 |" in md and "every kind fits in device memory: True" in md  # the demo: fold 0 only
    assert main(["estimate", "--configfile", str(ROOT / "config" / "config.yaml"), str(ROOT / "config" / "demo.yaml"),
                 "--tables", "table4", "--steps", "1", "--device", "cpu", "--out", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "estimate.csv").is_file()


def test_past_the_budget_kinds_are_inferred_and_say_so():
    result = estimate(merged_config(), ["table4"], device="cpu", steps=1, threads=1, progress=lambda line: None,
                      precisions=["config", "bf16"], budget_s=0)
    measured = [r for r in result["rows"] if r["timed"] == "measured"]
    assert len(measured) == 1 and len(result["rows"]) == 8  # the heaviest kind is always timed
    assert all(r["timed"].startswith("inferred") and r["hours"] > 0 for r in result["rows"] if r not in measured)
    assert {r["precision"] for r in result["rows"]} == {"tf32", "bf16"}


def test_comparison_with_measured_jobs(tmp_path):
    result = {"precisions": ["config"], "rows": [
        {"precision_column": "config", "method": "baseline", "dataset": "pascal", "backbone": "resnet50",
         "setting": "dagger", "policy": "svf", "recipe": "svf-code", "shot": 1, "fold_seeds": [(0, 321), (1, 321)],
         "train_hours_per_cell": 0.5, "test_hours_per_cell": 0.1, "hours_per_cell": 0.6}]}
    cell = {"dataset": "pascal", "backbone": "resnet50", "method": "baseline", "setting": "dagger", "policy": "svf",
            "recipe": "svf-code", "shot": 1, "fold": 0, "seed": 321}
    for job, seconds in (("train", 2400), ("evaluate", 360)):
        path = tmp_path / benchmark_name(job, cell)
        path.parent.mkdir(parents=True)
        path.write_text(f"s\th:m:s\n{seconds}\t0:00:00\n")
    got = compare_measured(result, tmp_path)  # fold 1 has no files: left out
    assert got["train"]["jobs"] == 1 and got["train"]["error"] == pytest.approx(0.5 / (2400 / 3600) - 1)
    assert got["all"]["error"] == pytest.approx(0.6 / (2760 / 3600) - 1)


def test_the_paper_config_projects_every_cell_and_base_learner(monkeypatch):
    """The paper-scale path without the compute: every kind's spec, list sizes, cache and protocol arithmetic, the
    base learners when trained, both precision columns (timings faked by the step's size)."""
    import svf.engine.tools.estimate as est

    def fake(entry, dev, steps, flops, builds, scratch, config):
        size = est._cost_rank(entry["spec"]) / 1e6 * (0.5 if entry["precision"].startswith("bf16") else 1.0)
        frozen = not entry["is_base"] and not est._backbone_trains(entry["spec"].cell.policy)
        return {"step_s": size, "val_episode_s": size / 20, "cached_val_episode_s": size / 100 if frozen else math.nan,
                "cache_bytes_per_episode": 44e6 if frozen else math.nan, "peak_gb": size, "micro_batch": 2,
                "precision": entry["precision"], "build_s": 3.0, "step_flops": math.nan}

    monkeypatch.setattr(est, "_time_entry", fake)
    trained = {**PAPER, "weights": {**PAPER["weights"], "bam_base_learner": "train"}}
    for config, base_rows in ((PAPER, 0), (trained, 4)):
        result = estimate(config, device="cpu", precisions=["config", "bf16"], progress=lambda line: None)
        rows = result["rows"]
        assert len(rows) == 2 * (79 + base_rows) and all(r["timed"] == "measured" for r in rows)
        assert all(math.isfinite(r["hours"]) and r["hours"] > 0 for r in rows)
        cells = [r for r in rows if r["method"] != "base-learner" and r["precision"] == "tf32"]
        assert sum(r["cells"] for r in cells) == 316
        assert sum(r["cells"] for r in rows if r["method"] == "base-learner") == 2 * 4 * base_rows
        bf16 = sum(r["hours"] for r in rows if r["precision"] == "bf16")
        assert bf16 < sum(r["hours"] for r in rows if r["precision"] == "tf32")
    pfenet39 = next(r for r in rows if r["recipe"] == "pfenet-original" and r["dataset"] == "coco")
    assert pfenet39["steps_per_epoch"] == 61_500 // 32 and pfenet39["validations"] == 50  # no mid-epoch pass
    coco = next(r for r in rows if r["dataset"] == "coco" and r["policy"] == "frozen" and r["shot"] == 5)
    assert coco["validations"] == 99 and 0 < coco["cached_episodes"] < 1000
