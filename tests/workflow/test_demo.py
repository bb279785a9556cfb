"""A reduced demo end to end through Snakemake: Table 4 and Figures 4 and 6 on fold 0 with the demo config
(synthetic data made in the real layouts, tiny backbones), then every output exists and parses."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from fakes import copy_workflow

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """Run `snakemake table4 figure4 figure6` on a copy of the workflow (so the repo's outputs stay untouched)."""
    work = tmp_path_factory.mktemp("demo")
    copy_workflow(work)
    overlay = work / "reduced.yaml"
    overlay.write_text(yaml.safe_dump({"tables": {"build": ["table4"], "folds": [0]}}))
    cmd = [sys.executable, "-m", "snakemake", "table4", "figure4", "figure6", "--workflow-profile", "demo",
           "--configfile", "config/demo.yaml", "config/quick.yaml", str(overlay)]
    result = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return work


def _cells(work):
    return sorted((work / "results" / "demo" / "cells").glob("**/metrics.json"))


def test_every_cell_of_table4_was_trained_and_evaluated(demo_run):
    metrics = [json.loads(p.read_text()) for p in _cells(demo_run)]
    assert sorted(m["cell"]["policy"] for m in metrics) == ["bn", "frozen", "svf", "svf-bn"]
    for m in metrics:
        assert 0.0 <= m["miou"] <= 100.0 and m["episodes"] > 0 and m["config_hash"] and m["code_version"]
        cell = demo_run / "results" / "demo" / "cells" / m["cell_id"]
        rows = list(csv.DictReader((cell / "train_log.csv").open()))
        assert len(rows) == m["epochs_run"] >= 1
        assert (cell / "model.pt").stat().st_size < 2_000_000  # trained tensors only


def test_table_files_parse_and_say_demo_scale(demo_run):
    tables = demo_run / "results" / "demo" / "tables"
    rows = list(csv.DictReader((tables / "table4.csv").open()))
    assert len(rows) == 4
    markdown = (tables / "table4.md").read_text()
    assert "demo scale" in markdown and "65.07" in markdown  # the paper's number beside ours
    tex = (tables / "table4.tex").read_text()
    assert "\\begin{tabular}" in tex and "demo scale" in tex


def test_figures_are_images(demo_run):
    figures = demo_run / "figures" / "demo"
    for name in ("figure6_singular_values.png", "figure4_fold0.png", "curves_table4.png"):
        with Image.open(figures / name) as image:
            assert image.size[0] > 200 and image.size[1] > 100
    assert (figures / "figure6_singular_values.pdf").read_bytes().startswith(b"%PDF")


def test_logs_and_benchmarks_for_every_training_and_evaluation(demo_run):
    for kind in ("train", "evaluate"):
        assert len(list((demo_run / "logs" / "demo" / kind).glob("**/*.log"))) == 4
        assert len(list((demo_run / "benchmarks" / "demo" / kind).glob("**/*.tsv"))) == 4


def test_rerun_has_nothing_to_do(demo_run):
    overlay = demo_run / "reduced.yaml"
    cmd = [sys.executable, "-m", "snakemake", "table4", "figure4", "figure6", "--workflow-profile", "demo",
           "--configfile", "config/demo.yaml", "config/quick.yaml", str(overlay), "-n"]
    result = subprocess.run(cmd, cwd=demo_run, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "Nothing to be done" in result.stdout + result.stderr


def test_offline_report_shows_tables_and_figures(demo_run):
    overlay = demo_run / "reduced.yaml"
    report = demo_run / "report.html"
    cmd = [sys.executable, "-m", "snakemake", "table4", "figure4", "figure6", "--configfile", "config/demo.yaml",
           "config/quick.yaml", str(overlay), "--report", str(report)]
    result = subprocess.run(cmd, cwd=demo_run, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    html = report.read_text()
    assert "table4.csv" in html and "figure6_singular_values.png" in html and "figure4_fold0.png" in html
    assert "<script src=\"http" not in html  # self-contained: works offline
