"""svf estimate: kinds of cells, the projection arithmetic, and a reduced run on this CPU."""
from __future__ import annotations

import math

import pytest
import yaml

from svf.cli import main
from svf.engine.estimate import distinct_kinds, estimate, project, write_estimate
from svf.pipeline.cells import Cell
from svf.pipeline.specs import cell_spec

from cells import ROOT, merged_config

PAPER = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def test_kinds_cover_every_cell_once():
    kinds = distinct_kinds(PAPER, PAPER["tables"]["build"])
    assert sum(k["cells"] for k in kinds) == 316 and len(kinds) == 79
    table4 = distinct_kinds(PAPER, ["table4"])
    assert len(table4) == 4 and all(k["cells"] == 4 for k in table4)
    seeds = distinct_kinds({**PAPER, "tables": {**PAPER["tables"], "seeds": [1, 2]}}, ["table4"])
    assert all(k["cells"] == 8 for k in seeds)


def test_projection_arithmetic():
    spec = cell_spec(PAPER, Cell("pascal", "resnet50", "baseline", "dagger", "svf", "svf-code", 1, 0))
    kind = {"dataset": "pascal", "setting": "dagger", "cells": 4}
    timing = {"step_s": 0.5, "val_episode_s": 0.01, "cached_val_episode_s": math.nan}
    got = project(kind, timing, spec, None)
    steps = int((4208 + 3726 + 2752 + 4510) / 4) // 8  # the authors' dagger lists, batch 8
    assert got["steps_per_epoch"] == steps and got["validations"] == 200
    hours = (200 * steps * 0.5 + 200 * 1000 * 0.01 + 1000 * 0.01) / 3600
    assert got["hours_per_cell"] == pytest.approx(hours) and got["hours"] == pytest.approx(4 * hours)
    # early stop 75 after a best at a third of 200 epochs: (66.7 + 75) / 200 of training and validation
    assert got["early_stop_hours_per_cell"] == pytest.approx((hours - 10 / 3600) * (200 / 3 + 75) / 200 + 10 / 3600)
    frozen = project(kind, {**timing, "cached_val_episode_s": 0.001}, spec, None)
    assert frozen["hours_per_cell"] < got["hours_per_cell"]  # cached validation passes after the first


def test_a_reduced_estimate_runs_on_the_cpu(tmp_path):
    result = estimate(merged_config(), ["table4"], device="cpu", steps=1, threads=1, progress=lambda line: None)
    assert len(result["rows"]) == 4 and all(r["step_s"] > 0 and r["hours_per_cell"] > 0 for r in result["rows"])
    frozen = next(r for r in result["rows"] if r["policy"] == "frozen")
    assert frozen["cached_val_episode_s"] < frozen["val_episode_s"]
    md = write_estimate(result, tmp_path)[1].read_text()
    assert "| table4 | 4 |" in md and "Every kind fits in device memory: True" in md  # the demo: fold 0 only
    assert main(["estimate", "--configfile", str(ROOT / "config" / "config.yaml"), str(ROOT / "config" / "demo.yaml"),
                 "--tables", "table4", "--steps", "1", "--device", "cpu", "--out", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "estimate.csv").is_file()
