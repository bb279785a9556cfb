"""A reduced demo end to end through Snakemake: Table 4, a Table 9 added to the tables file (tables are data), and
Figures 4 and 6 on fold 0 with the demo config (synthetic data made in the real layouts, tiny backbones), then every
output exists and parses, and the console showed one result line per job."""
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


TARGETS = ("table4", "table9", "figure4", "figure6")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """Run `snakemake table4 table9 figure4 figure6` on a copy of the workflow (so the repo's outputs stay
    untouched), with a Table 9 written into the copy's tables file: Table 4's frozen and S rows."""
    work = tmp_path_factory.mktemp("demo")
    copy_workflow(work)
    tables_file = work / "config" / "tables.yaml"
    tables = yaml.safe_load(tables_file.read_text())
    rows = [r for r in tables["tables"]["table4"]["rows"] if r["id"] in ("frozen", "svf")]
    tables["tables"]["table9"] = {**tables["tables"]["table4"], "title": "Table 9: frozen against S, PASCAL-5i",
                                  "extra_columns": [], "rows": [{k: v for k, v in r.items() if k != "extra"}
                                                                for r in rows]}
    tables_file.write_text(yaml.safe_dump(tables, allow_unicode=True, sort_keys=False))
    overlay = work / "reduced.yaml"
    overlay.write_text(yaml.safe_dump({"tables": {"build": ["table4", "table9"], "folds": [0]}}))
    cmd = [sys.executable, "-m", "snakemake", *TARGETS, "--workflow-profile", "demo",
           "--configfile", "config/demo.yaml", "config/quick.yaml", str(overlay)]
    result = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    (work / "console.txt").write_text(result.stdout + result.stderr)
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


def test_a_table_added_to_the_yaml_is_built_from_the_shared_cells(demo_run):
    tables = demo_run / "results" / "demo" / "tables"
    markdown = (tables / "table9.md").read_text()
    assert markdown.startswith("### Table 9: frozen against S, PASCAL-5i (demo scale")
    assert len(list(csv.DictReader((tables / "table9.csv").open()))) == 2
    assert len(_cells(demo_run)) == 4  # its cells are Table 4's: nothing trained twice


def test_the_console_shows_each_jobs_result_and_every_log_has_it(demo_run):
    console = (demo_run / "console.txt").read_text()
    trained = [line for line in console.splitlines() if line.startswith("svf train: pascal/")]
    evaluated = [line for line in console.splitlines() if line.startswith("svf evaluate: pascal/")]
    assert len(trained) == 4 and all("validation mIoU" in line for line in trained)
    assert len(evaluated) == 4 and all(" mIoU " in line and "test episodes" in line for line in evaluated)
    assert "svf pretrain: resnet50: top-1" in console and "svf figure4: " in console
    for log in (demo_run / "logs" / "demo" / "evaluate").glob("**/*.log"):
        assert "svf evaluate: " in log.read_text() and " mIoU " in log.read_text()
    for log in (demo_run / "logs" / "demo" / "figures").glob("*.log"):
        assert log.read_text().strip(), log


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
    cmd = [sys.executable, "-m", "snakemake", *TARGETS, "--workflow-profile", "demo",
           "--configfile", "config/demo.yaml", "config/quick.yaml", str(overlay), "-n"]
    result = subprocess.run(cmd, cwd=demo_run, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "Nothing to be done" in result.stdout + result.stderr


def test_offline_report_shows_tables_and_figures(demo_run):
    overlay = demo_run / "reduced.yaml"
    report = demo_run / "report.html"
    cmd = [sys.executable, "-m", "snakemake", *TARGETS, "--configfile", "config/demo.yaml",
           "config/quick.yaml", str(overlay), "--report", str(report)]
    result = subprocess.run(cmd, cwd=demo_run, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    html = report.read_text()
    assert "table4.csv" in html and "figure6_singular_values.png" in html and "figure4_fold0.png" in html
    assert "<script src=\"http" not in html  # self-contained: works offline
    assert "table9.csv" in html


def test_a_report_of_the_default_target_shows_what_exists(demo_run):
    """`snakemake --report` (target all: results.csv, the summary and the overview were never built here)."""
    report = demo_run / "partial.html"
    cmd = [sys.executable, "-m", "snakemake", "--configfile", "config/demo.yaml", "config/quick.yaml",
           str(demo_run / "reduced.yaml"), "--report", str(report)]
    result = subprocess.run(cmd, cwd=demo_run, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "table4.csv" in report.read_text() and "overview.png" not in report.read_text()
