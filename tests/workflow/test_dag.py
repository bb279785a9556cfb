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
    assert result.returncode == 7  # a model-file error (svf/errors.py)
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


STUDY = ("config/demo.yaml", "config/study.yaml", "config/study-cpu.yaml")


def test_the_study_trains_every_row_alike_with_more_seeds_for_the_primary_rows_in_one_world():
    counts = dry_run("study", extra=("--forceall", "--configfile", *STUDY))
    # 19 rows x 4 folds x seeds 45-46; the primary rows' extra seeds on 4 folds (frozen, full: 6; U: 8; S, V: 10);
    # the probe's 2 rows x 4 folds x 2
    runs = 19 * 4 * 2 + (6 + 6 + 8 + 10 + 10) * 4
    assert counts["train"] == runs + 2 * 4 * 2 and counts["evaluate"] == runs == 312
    assert counts["probe"] == 16 and counts["study_cells"] == 1 and counts["study_report"] == 1
    # one synthetic world (the demo's) for every seed, the probe's included
    assert counts["synthesize"] == counts["pretrain_weights"] == counts["splits"] == 1
    assert "train_base" not in counts and counts["table"] == 5


def test_the_first_designs_world_per_seed_still_builds_a_world_for_every_seed(tmp_path):
    overlay = tmp_path / "worlds.yaml"
    overlay.write_text(yaml.safe_dump({"data": {"synthetic": {"worlds": "per_seed"}}}))
    counts = dry_run("study", extra=("--forceall", "--configfile", *STUDY, str(overlay)))
    # seeds 45-56 and the probe's 101, 102: one synthetic dataset and stand-in pretraining each
    assert counts["synthesize"] == counts["pretrain_weights"] == counts["splits"] == 12 + 2


def test_the_second_world_runs_table5_in_a_world_of_its_own_with_fold_private_looks():
    result = snakemake("-n", "-p", "study", "--forceall", "--configfile", *STUDY, "config/study-fold-private.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    counts = job_counts(result.stdout)
    # Table 5's 6 rows x 4 folds x seeds 57-58; frozen, full and SVF also seeds 59-64; the probe's 2 rows x 4 x 2
    runs = 6 * 4 * 2 + 3 * 4 * 6
    assert counts["train"] == runs + 16 and counts["evaluate"] == runs == 120 and counts["probe"] == 16
    assert counts["synthesize"] == counts["pretrain_weights"] == 1 and counts["table"] == 1
    assert "--looks fold_private" in result.stdout and "resources/study-fold-private/raw/pascal" in result.stdout
    assert '"looks":"fold_private"' in result.stdout.replace(" ", "")  # the stand-in pretraining's spec


def test_the_study_design_runs_on_the_paper_config():
    counts = dry_run("study", extra=("--configfile", "config/config.yaml", "config/study.yaml"))
    assert counts["train"] == counts["evaluate"] == 312 and "probe" not in counts and "synthesize" not in counts


def test_probe_seeds_must_differ_from_the_rows_seeds(tmp_path):
    overlay = tmp_path / "clash.yaml"
    overlay.write_text(yaml.safe_dump({"study": {"probe_seeds": [55, 101]}}))  # 55: an extra seed of S and V
    result = snakemake("-n", "study", "--configfile", *STUDY, str(overlay))
    assert result.returncode != 0 and "probe_seeds [55]" in result.stdout + result.stderr


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
    ({"data": {"sourc": "synthetic"}}, "data: unknown key 'sourc'; did you mean 'source'?"),
    ({"foo": 1}, "top level: unknown key 'foo' (valid keys: pathvars, seed,"),
    ({"seed": "x"}, "seed: 'x' is not of type 'integer'"),
    ({"tables": {"folds": [5]}}, "tables/folds/0: 5 is greater than the maximum of 3"),
    ({"tables": {"shots": [0]}}, "tables/shots/0: 0 is less than the minimum of 1"),
    ({"tables": {"build": ["table3"]}}, "tables.build: 'table3' is not a table of config/tables.yaml"),
    ({"model": {"rank": "half"}}, "model/rank: 'half' is not one of full, official"),
    ({"recipes": {"svf-code": {"base_lrr": 1}}}, "recipes/svf-code: unknown key 'base_lrr'; did you mean 'base_lr'?"),
    ({"data": {"synthetic": {"looks": "fold_private"}}}, "data.synthetic.looks: fold_private redraws the synthetic "
     "data and the stand-in pretraining; it needs data.source: synthetic and weights.source: pretrain (has download "
     "and download)"),
    ({"data": {"synthetic": {"worlds": "per_seed"}}}, "data.synthetic.worlds: per_seed redraws"),
])
def test_bad_config_fails_before_any_job_in_one_paragraph(tmp_path, overlay, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(overlay))
    result = snakemake("-n", "table4", "--configfile", str(path))
    out = result.stdout + result.stderr
    assert result.returncode == 5, out
    assert message in out and str(path) in out
    assert "Traceback" not in out and 'File "' not in out and "$schema" not in out and len(out.splitlines()) < 8


@pytest.mark.parametrize("edit, message", [
    (("method", "pfenett"), "tables/table4/rows/0/method: 'pfenett' is not one of baseline, pfenet, bam; did you "
                            "mean 'pfenet'?"),
    (("policy", "svf-l5"), "tables/table4/rows/0 (id 'frozen')/policy: unknown policy 'svf-l5' (layers are distinct "
                           "digits 0-4 in increasing order, e.g. l34); did you mean 'svf-l4'? valid forms: frozen, "
                           "svf[-l<digits 0-4>]"),
    (("recipe", "svf-cod"), "uses recipe 'svf-cod'; did you mean 'svf-code'?"),
])
def test_bad_tables_yaml_fails_before_any_job_naming_the_nearest_name(tmp_path, edit, message):
    tables = yaml.safe_load((ROOT / "config" / "tables.yaml").read_text())
    key, value = edit
    tables["tables"]["table4"]["rows"][0][key] = value
    path = tmp_path / "tables.yaml"
    path.write_text(yaml.safe_dump(tables, allow_unicode=True))
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"tables": {"file": str(path)}}))
    result = snakemake("-n", "table4", "--configfile", str(overlay))
    out = result.stdout + result.stderr
    assert result.returncode == 5, out
    assert message in out and str(path) in out and "Traceback" not in out and "(?" not in out


def test_a_table_added_to_the_tables_file_is_a_target_and_a_build_name(tmp_path):
    tables = yaml.safe_load((ROOT / "config" / "tables.yaml").read_text())
    tables["tables"]["table9"] = {**tables["tables"]["table4"], "title": "Table 9: BN again, on PASCAL-5i"}
    tables["tables"]["table9"]["rows"] = tables["tables"]["table4"]["rows"][:2]
    (tmp_path / "tables.yaml").write_text(yaml.safe_dump(tables, allow_unicode=True))
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"tables": {"file": str(tmp_path / "tables.yaml"),
                                                  "build": ["table4", "table9"]}}))
    listed = snakemake("--list-target-rules", "--configfile", str(overlay))
    assert "table9" in listed.stdout.split()
    counts = dry_run("table9", extra=("--configfile", str(overlay)))
    assert counts["table9"] == 1 and counts["table"] == 1 and counts["train"] == 2 * 4  # frozen, bn; 4 folds


def test_a_misspelled_target_lists_the_targets():
    result = snakemake("-n", "tabel4")
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "svf workflow: usage error: 'tabel4' is neither a target rule nor a file the workflow makes; did you mean " \
           "'table4'?" in out
    listed = out.split("Targets: ", 1)[1].split(" (", 1)[0].split(", ")
    assert listed == ["all", "demo", "table1", "table2", "table4", "table5", "table6", "table7", "table8", "study",
                      "bundle", "estimate", "figure4", "figure6"] and "Traceback" not in out


def test_the_slurm_profile_names_an_unset_variable_before_anything_runs():
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(SLURM_ACCOUNT="proj", SLURM_GPU_PARTITION="gpu")
    result = subprocess.run([sys.executable, "-m", "snakemake", "table4", "--workflow-profile", "slurm", "-n"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    out = result.stdout + result.stderr
    assert result.returncode == 5, out
    assert "environment variable(s) that are not set: SLURM_CPU_PARTITION ($SLURM_CPU_PARTITION in " \
           "default-resources slurm_partition)" in out
    assert "export SLURM_CPU_PARTITION=" in out and "Job stats" not in out


def test_the_cost_estimate_asks_for_its_gpu_on_the_gpu_partition():
    env = {"SLURM_ACCOUNT": "proj", "SLURM_CPU_PARTITION": "cpu", "SLURM_GPU_PARTITION": "gpu"}
    result = snakemake("estimate", "--workflow-profile", "slurm", "-n", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    block = [b for b in result.stdout.split("\n\n") if re.search(r"^rule estimate_cost:", b, re.M)]
    assert len(block) == 1 and "gpu=1" in block[0] and "slurm_partition=gpu" in block[0]


def test_a_report_with_nothing_built_is_made_from_what_exists(tmp_path):
    from fakes import copy_workflow

    (tmp_path / "work").mkdir()
    work = copy_workflow(tmp_path / "work")
    result = snakemake("--report", "report.html", cwd=work)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "nothing is built yet" in out and "Missing metadata" not in out and len(out.splitlines()) < 10
    assert (work / "report.html").stat().st_size > 10_000
