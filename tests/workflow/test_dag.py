"""The Snakemake DAG: cell counts of the paper config, single-table targets, target rules, the SLURM profile's
dry run, and config errors caught before any job starts."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def snakemake(*args, env=None, cwd=ROOT):
    cmd = [sys.executable, "-m", "snakemake", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count}."""
    block = output.split("Job stats:")[1].split("\n\n")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", block, re.M)}


def dry_run(*targets, extra=()):
    result = snakemake("-n", *targets, *extra)
    assert result.returncode == 0, result.stdout + result.stderr
    return job_counts(result.stdout)


def test_paper_config_builds_316_cells_and_imports_16_published_base_learners():
    counts = dry_run()
    assert counts["train"] == 316 and counts["evaluate"] == 316
    # the authors' BAM.py loads BAM's published base learners: imported, not trained (none is in place here, so the
    # rule that says where to get them is in the plan too)
    assert counts["import_base_learner"] == 16 and counts["published_base_learner"] == 16
    assert "train_base" not in counts
    assert counts["table"] == 7 and counts["figure4_plot"] == 4 and counts["figure6_plot"] == 1


def test_trained_base_learners_are_the_named_alternative(tmp_path):
    overlay = tmp_path / "train_base.yaml"
    overlay.write_text(yaml.safe_dump({"weights": {"bam_base_learner": "train"}}))
    counts = dry_run(extra=("--configfile", "config/config.yaml", str(overlay)))
    assert counts["train_base"] == 16 and "import_base_learner" not in counts


def test_a_missing_published_base_learner_says_where_to_get_it(tmp_path):
    missing = tmp_path / "PSPNet" / "pascal" / "split0" / "resnet50" / "best.pth"
    result = subprocess.run([sys.executable, "-m", "svf", "import-base-learner", "--missing", str(missing)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert str(missing) in result.stderr and "sharepoint.com" in result.stderr
    assert "weights.bam_base_learner: train" in result.stderr


def test_table4_builds_only_its_16_cells():
    counts = dry_run("table4")
    assert counts["train"] == 16 and counts["evaluate"] == 16
    assert "train_base" not in counts and "import_base_learner" not in counts and counts["table"] == 1


def test_seeds_multiply_cells_but_not_base_learners(tmp_path):
    overlay = tmp_path / "seeds.yaml"
    overlay.write_text(yaml.safe_dump({"tables": {"seeds": [1, 2, 3]}}))
    counts = dry_run("table4", "table1", extra=("--configfile", "config/config.yaml", str(overlay)))
    # table1's 144 cells and table4's 8 new ones (BN, BN + S; frozen and S are table1's), each for 3 seeds
    assert counts["train"] == 3 * (144 + 8) and counts["evaluate"] == 3 * (144 + 8)
    assert counts["import_base_learner"] == 8


def test_the_study_trains_tables_4_to_8_on_every_fold_with_three_seeds():
    counts = dry_run("study", extra=("--forceall", "--configfile", "config/demo.yaml", "config/study.yaml"))
    assert counts["train"] == 19 * 4 * 3 and counts["evaluate"] == 228 and counts["study_report"] == 1
    assert "train_base" not in counts and counts["table"] == 5


def test_the_demo_covers_fold_0_one_shot_of_every_table():
    counts = dry_run("demo", extra=("--forceall", "--configfile", "config/demo.yaml"))
    assert counts["train"] == 48 and counts["train_base"] == 4 and counts["table"] == 7


def test_table1_needs_the_pascal_base_learners_only():
    counts = dry_run("table1")
    assert counts["train"] == 144 and counts["import_base_learner"] == 8


def test_table2_cells():
    counts = dry_run("table2")
    assert counts["train"] == 104 and counts["import_base_learner"] == 8


def test_target_rules_listed():
    result = snakemake("--list-target-rules")
    assert result.returncode == 0, result.stderr
    rules = set(result.stdout.split())
    assert {"all", "demo", "figure4", "figure6", "table1", "table2", "table4", "table5", "table6", "table7",
            "table8", "study", "estimate"} <= rules
    assert "table3" not in rules


def test_slurm_profile_dry_run_requests_one_gpu_per_training_job():
    env = {"SLURM_ACCOUNT": "proj", "SLURM_CPU_PARTITION": "cpu", "SLURM_GPU_PARTITION": "gpu"}
    result = snakemake("table4", "--workflow-profile", "slurm", "-n", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert job_counts(out)["train"] == 16
    train_jobs = [block for block in out.split("\n\n") if re.search(r"^rule train:", block, re.M)]
    assert train_jobs and all("gpu=1" in b and "slurm_partition=gpu" in b for b in train_jobs)


@pytest.mark.parametrize("overlay, message", [
    ({"data": {"sourc": "synthetic"}}, "'sourc' was unexpected"),
    ({"seed": "x"}, "'x' is not of type 'integer'"),
    ({"tables": {"folds": [5]}}, "5 is greater than the maximum of 3"),
    ({"tables": {"shots": [0]}}, "0 is less than the minimum of 1"),
    ({"tables": {"build": ["table3"]}}, "'table3' is not one of"),
    ({"model": {"rank": "half"}}, "'half' is not one of ['full', 'official']"),
])
def test_bad_config_fails_before_any_job(tmp_path, overlay, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(overlay))
    result = snakemake("-n", "table4", "--configfile", str(path))
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


@pytest.mark.parametrize("edit, message", [
    (("method", "pfenett"), "pfenett"),
    (("policy", "svf-X"), "svf-X"),
    (("recipe", "no-such-recipe"), "no-such-recipe"),
])
def test_bad_tables_yaml_fails_before_any_job(tmp_path, edit, message):
    tables = yaml.safe_load((ROOT / "config" / "tables.yaml").read_text())
    key, value = edit
    tables["tables"]["table4"]["rows"][0][key] = value
    path = tmp_path / "tables.yaml"
    path.write_text(yaml.safe_dump(tables, allow_unicode=True))
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"tables": {"file": str(path)}}))
    result = snakemake("-n", "table4", "--configfile", str(overlay))
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
