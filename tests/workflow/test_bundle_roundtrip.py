"""A results bundle end to end through Snakemake: a reduced demo (Table 4, fold 0, quick schedule) trains and
exports (`snakemake table4 bundle`); a second copy of the workflow with the first one's data and stand-in weights
but no trained cell imports it (`results_from`) and rebuilds Table 4 by evaluation alone, to the last digit."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fakes import copy_workflow

pytestmark = pytest.mark.slow
CONFIGS = ("--configfile", "config/demo.yaml", "config/quick.yaml", "reduced.yaml")


def snakemake(work: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", *args, "--workflow-profile", "demo", *CONFIGS]
    result = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    source, target = (copy_workflow(tmp_path_factory.mktemp(name)) for name in ("source", "target"))
    for work in (source, target):
        (work / "reduced.yaml").write_text(yaml.safe_dump({"tables": {"build": ["table4"], "folds": [0]}}))
    snakemake(source, "table4", "bundle")
    for part in ("raw", "data", "splits", "weights"):  # inputs, not trained cells: no base learner, no checkpoint
        shutil.copytree(source / "resources" / "demo" / part, target / "resources" / "demo" / part)
    archive = source / "results" / "demo" / "bundle.tar.gz"
    result = snakemake(target, "table4", "--config", f"results_from={archive}")
    return source, target, result


def _metrics(work: Path) -> dict[str, dict]:
    cells = work / "results" / "demo" / "cells"
    return {p.parent.relative_to(cells).as_posix(): json.loads(p.read_text()) for p in cells.glob("**/metrics.json")}


def test_nothing_trains_where_the_bundle_is_imported(round_trip):
    _, target, result = round_trip
    logs = target / "logs" / "demo"
    assert not (logs / "train").exists() and not (logs / "pretrain").exists()
    assert len(list((logs / "evaluate").glob("**/*.log"))) == 4
    assert "4 cell(s) and 0 BAM base learner(s) to import" in (logs / "bundle" / "import.log").read_text()
    assert "rule train:" not in result.stdout + result.stderr


def test_every_cell_re_evaluates_to_its_recorded_numbers_to_the_last_digit(round_trip):
    source, target, _ = round_trip
    here, there = _metrics(source), _metrics(target)
    assert sorted(here) == sorted(there) and len(here) == 4
    for cid, metrics in there.items():
        recorded = json.loads((target / "results" / "demo" / "cells" / cid / "recorded_metrics.json").read_text())
        assert recorded == here[cid]
        for key in ("miou", "fb_iou", "class_iou", "per_seed", "episodes", "selected_epoch"):
            assert metrics[key] == here[cid][key], (cid, key)


def test_the_table_is_the_same_and_shows_the_recorded_number(round_trip):
    source, target, _ = round_trip
    tables = [pd.read_csv(work / "results" / "demo" / "tables" / "table4.csv") for work in (source, target)]
    assert tables[0]["1shot_mean_reproduced"].tolist() == tables[1]["1shot_mean_reproduced"].tolist()
    assert tables[1]["1shot_mean_recorded"].tolist() == tables[1]["1shot_mean_reproduced"].tolist()
    assert not tables[1]["1shot_mean_not_reproduced"].any()
    markdown = (target / "results" / "demo" / "tables" / "table4.md").read_text()
    assert markdown.count("; recorded") == 4 and "(0 of 4 values)" in markdown


def test_a_rerun_has_nothing_to_do(round_trip):
    source, target, _ = round_trip
    archive = source / "results" / "demo" / "bundle.tar.gz"
    cmd = [sys.executable, "-m", "snakemake", "table4", "-n", *CONFIGS, "--config", f"results_from={archive}"]
    result = subprocess.run(cmd, cwd=target, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "Nothing to be done" in result.stdout + result.stderr
