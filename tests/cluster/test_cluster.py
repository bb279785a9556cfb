"""Integration tests of cluster submission: workflows run with `--workflow-profile workflow/profiles/slurm` against a
real one-node SLURM cluster on 127.0.0.1 (tests/cluster/start_cluster.sh), not only a dry run.

Skipped, with the reason in the -ra summary, where the Debian packages slurmctld slurmd slurm-client munge are not
installed or the tests do not run as root; .ci/run installs them.
"""

import json
import os
import subprocess

import pytest
import yaml

from cluster_harness import (
    HERE,
    PROFILE_DIR,
    REPO,
    START,
    STOP,
    TEST_ARGS,
    cluster_unavailable_reason,
    job_rule,
    job_wildcards,
    profile,
    run_snakemake,
    slurm_time,
)

pytestmark = pytest.mark.cluster

TOY = HERE / "toy" / "Snakefile"
TOY_CELLS = ("a", "b", "c")  # the toy Snakefile's default cells
GPU_RULES = ("train", "evaluate")
ACCOUNT = "svftest"
PARTITION = "debug"  # the test cluster's only partition
TOY_TIMEOUT = 420  # ~45 s here; generous for a loaded 2-core CI machine


def needs_packages():
    reason = cluster_unavailable_reason()
    if reason:
        pytest.skip(reason)


def failure_report(run, cluster):
    return (
        f"snakemake exit {run.returncode}, timed out: {run.timed_out}, {run.seconds:.0f} s\n"
        f"----- snakemake output (last 80 lines) -----\n" + "\n".join(run.output.splitlines()[-80:]) + "\n"
        + cluster.logs()
    )


def test_cluster_is_up_with_fake_gpus(slurm_cluster):
    # The jobstep's inner srun has no SLURM_CONF: it must find this cluster's config at the default path.
    assert os.path.realpath("/etc/slurm/slurm.conf") == str(slurm_cluster.conf)
    node = subprocess.run(
        ["scontrol", "show", "node", "-o", slurm_cluster.node],
        env=slurm_cluster.env(), capture_output=True, text=True, timeout=30, check=True,
    ).stdout
    assert f"Gres=gpu:{slurm_cluster.gpus}" in node, node
    assert "State=IDLE" in node, node
    assert slurm_cluster.start_seconds < 30, f"cluster start took {slurm_cluster.start_seconds:.1f} s"


def test_toy_workflow_runs_gpu_rules_as_slurm_jobs(slurm_cluster, tmp_path, record_property):
    work = tmp_path / "toy"
    env = slurm_cluster.env(
        SLURM_ACCOUNT=ACCOUNT, SLURM_CPU_PARTITION=PARTITION, SLURM_GPU_PARTITION=PARTITION
    )
    run = run_snakemake(
        ["--snakefile", TOY, "--directory", work, "--workflow-profile", PROFILE_DIR, *TEST_ARGS],
        cwd=work, env=env, timeout=TOY_TIMEOUT,
    )
    record_property("toy_workflow_seconds", round(run.seconds, 1))
    record_property("cluster_start_seconds", round(slurm_cluster.start_seconds, 2))
    print(f"toy workflow: {run.seconds:.1f} s; cluster start: {slurm_cluster.start_seconds:.2f} s")
    assert run.returncode == 0 and not run.timed_out, failure_report(run, slurm_cluster)

    results = work / "results"
    expected = [results / "prepare.json", results / "summary.json"]
    expected += [results / rule / f"{cell}.json" for rule in GPU_RULES for cell in TOY_CELLS]
    missing = [str(p) for p in expected if not p.is_file()]
    assert not missing, f"outputs missing: {missing}\n" + failure_report(run, slurm_cluster)
    records = {p.relative_to(results).as_posix(): json.loads(p.read_text()) for p in expected}

    # Local rules ran in the controller process, outside SLURM.
    for name in ("prepare.json", "summary.json"):
        env_seen = records[name]["env"]
        assert env_seen["SLURM_JOB_ID"] is None and env_seen["CUDA_VISIBLE_DEVICES"] is None, (name, env_seen)

    # GPU rules ran as SLURM jobs with the production profile's requests, one job per rule instance.
    settings = profile()["set-resources"]
    job_ids = {}
    for rule in GPU_RULES:
        wanted = settings[rule]
        for cell in TOY_CELLS:
            record = records[f"{rule}/{cell}.json"]
            env_seen, job = record["env"], record["scontrol"]
            assert env_seen["SLURM_JOB_ID"], (rule, cell, env_seen)
            # The rule runs in the jobstep's inner `srun` step, with one of the node's GPUs visible.
            assert env_seen["SLURM_STEP_ID"] is not None, (rule, cell, env_seen)
            visible = [str(i) for i in range(slurm_cluster.gpus)]
            assert env_seen["CUDA_VISIBLE_DEVICES"] in visible, (rule, cell, env_seen)
            assert job.get("TresPerJob") == f"gres:gpu:{wanted['gpu']}", (rule, cell, job)
            assert job.get("Account") == ACCOUNT and job.get("Partition") == PARTITION, (rule, cell, job)
            assert job.get("NumCPUs") == str(wanted["cpus_per_gpu"] * wanted["gpu"]), (rule, cell, job)
            assert job.get("MinMemoryNode") == f"{wanted['mem_mb']}M", (rule, cell, job)
            assert job.get("TimeLimit") == slurm_time(wanted["runtime"]), (rule, cell, job)
            assert job.get("Comment") == f"rule_{rule}_wildcards_{cell}", (rule, cell, job)
            job_ids[f"rule_{rule}_wildcards_{cell}"] = env_seen["SLURM_JOB_ID"]
    assert len(set(job_ids.values())) == len(job_ids), f"jobs shared a SLURM job id: {job_ids}"
    # evaluate consumed the train record of its own cell
    for cell in TOY_CELLS:
        assert records[f"evaluate/{cell}.json"]["inputs"][0]["env"]["SLURM_JOB_ID"] == job_ids[
            f"rule_train_wildcards_{cell}"
        ]

    # SLURM's own view: exactly these jobs were submitted under this run (job name = snakemake's run id), each once,
    # all completed, each with a GPU request; nothing was submitted for the local rules.
    run_id = records[f"train/{TOY_CELLS[0]}.json"]["scontrol"]["JobName"]
    jobs = slurm_cluster.squeue(name=run_id)
    comments = sorted(job["Comment"] for job in jobs)
    assert comments == sorted(job_ids), f"SLURM jobs of run {run_id}: {jobs}"
    assert all(job["State"] == "COMPLETED" for job in jobs), jobs
    assert all(job["tres-per-job"] == "gres:gpu:1" for job in jobs), jobs
    assert {job["JobID"] for job in jobs} == set(job_ids.values()), (jobs, job_ids)


def test_interrupted_run_cancels_its_jobs_and_resumes(slurm_cluster, tmp_path):
    # The harness stops a run with SIGINT: snakemake must cancel its SLURM jobs, leave nothing running and release
    # its lock, so that the same command can simply be run again (docs/cluster.md, "Resuming").
    work = tmp_path / "toy"
    cell = "interrupted"
    args = ["--snakefile", TOY, "--directory", work, "--workflow-profile", PROFILE_DIR, *TEST_ARGS,
            "--config", f"cells=[{cell}]"]
    base_env = dict(SLURM_ACCOUNT=ACCOUNT, SLURM_CPU_PARTITION=PARTITION, SLURM_GPU_PARTITION=PARTITION)

    def train_jobs():
        return [job for job in slurm_cluster.squeue() if job["Comment"] == f"rule_train_wildcards_{cell}"]

    def train_running():
        return any(job["State"] == "RUNNING" for job in train_jobs())

    run = run_snakemake(
        args, cwd=work, env=slurm_cluster.env(SVF_TOY_JOB_SLEEP="600", **base_env),
        timeout=TOY_TIMEOUT, interrupt_when=train_running,
    )
    # Interrupted while the train job was running (not at the time limit), and snakemake exited on SIGINT alone.
    assert run.timed_out and not run.killed and run.seconds < TOY_TIMEOUT, failure_report(run, slurm_cluster)
    assert run.returncode != 0
    jobs = train_jobs()
    assert len(jobs) == 1 and jobs[0]["State"] == "CANCELLED", f"{jobs}\n" + failure_report(run, slurm_cluster)
    assert not (work / "results" / "train" / f"{cell}.json").exists()

    rerun = run_snakemake(
        args, cwd=work, env=slurm_cluster.env(SVF_TOY_JOB_SLEEP="0.2", **base_env), timeout=TOY_TIMEOUT
    )
    assert rerun.returncode == 0 and not rerun.timed_out, failure_report(rerun, slurm_cluster)
    assert (work / "results" / "summary.json").is_file()
    states = sorted(job["State"] for job in train_jobs())
    assert states == ["CANCELLED", "COMPLETED"], states
    active = [job for job in slurm_cluster.squeue() if job["State"] in ("PENDING", "RUNNING", "COMPLETING")]
    assert not active, active


def test_start_refuses_a_used_directory(tmp_path):
    needs_packages()
    (tmp_path / "leftover").write_text("state of an earlier cluster")
    result = subprocess.run([str(START), str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "not empty" in result.stderr


def test_stop_is_idempotent(tmp_path):
    needs_packages()
    # A directory with no running cluster (e.g. after a failed start): nothing to stop, no error.
    for directory in (tmp_path / "never-created", tmp_path):
        result = subprocess.run([str(STOP), str(directory)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr


MAIN_SNAKEFILE = REPO / "Snakefile"
DEMO_CONFIG = REPO / "config" / "demo.yaml"
QUICK_CONFIG = REPO / "config" / "quick.yaml"  # plumbing-only schedule: the test is about SLURM, not learning


def test_main_workflow_table4_on_slurm(slurm_cluster, tmp_path, record_property):
    """table4 of the real DAG on the demo config, restricted to fold 0, through the production slurm profile."""
    work = tmp_path / "main"
    work.mkdir()
    # Outputs go to the temporary working directory (below the demo config's pathvars); the Snakefile's relative
    # `configfile: config/config.yaml` is resolved from there, hence the link.
    (work / "config").symlink_to(REPO / "config")
    override = work / "cluster-test.yaml"
    override.write_text("# test override: one fold keeps the SLURM run short\ntables:\n  folds: [0]\n")
    env = slurm_cluster.env(
        SLURM_ACCOUNT=ACCOUNT, SLURM_CPU_PARTITION=PARTITION, SLURM_GPU_PARTITION=PARTITION
    )
    earlier = {job["JobID"] for job in slurm_cluster.squeue()}  # the module's cluster also ran other tests' jobs
    run = run_snakemake(
        ["table4", "--snakefile", MAIN_SNAKEFILE, "--directory", work, "--workflow-profile", PROFILE_DIR,
         "--jobs", "8", *TEST_ARGS, "--configfile", DEMO_CONFIG, QUICK_CONFIG, override],
        cwd=work, env=env, timeout=3000,
    )
    record_property("table4_seconds", round(run.seconds, 1))
    print(f"table4 (demo config, fold 0) through SLURM: {run.seconds:.1f} s")
    assert run.returncode == 0 and not run.timed_out, failure_report(run, slurm_cluster)

    results = work / yaml.safe_load(DEMO_CONFIG.read_text())["pathvars"]["results"]
    for suffix in ("csv", "md", "tex"):
        assert (results / "tables" / f"table4.{suffix}").is_file(), f"table4.{suffix} missing under {results}"
    cells = sorted((results / "cells").rglob("metrics.json"))
    assert cells, "no cell was evaluated"
    assert all("/fold0/" in str(c) for c in cells), cells

    # SLURM's view: one train and one evaluate job per cell, each exactly once, each with a GPU, all completed;
    # nothing for the local rules.
    jobs = [job for job in slurm_cluster.squeue() if job["JobID"] not in earlier]
    by_rule = {}
    for job in jobs:
        by_rule.setdefault(job_rule(job["Comment"]), []).append(job)
    for rule in ("train", "evaluate"):
        ran = by_rule.get(rule, [])
        wildcards = [job_wildcards(job["Comment"]) for job in ran]
        assert len(ran) == len(cells), f"{rule}: {len(ran)} SLURM jobs for {len(cells)} cells: {sorted(wildcards)}"
        assert len(set(wildcards)) == len(wildcards), f"{rule}: a cell was submitted twice: {sorted(wildcards)}"
        assert all(job["State"] == "COMPLETED" and job["tres-per-job"] == "gres:gpu:1" for job in ran), ran
    assert {job_wildcards(j["Comment"]) for j in by_rule["train"]} == {
        job_wildcards(j["Comment"]) for j in by_rule["evaluate"]
    }
    local = sorted(set(by_rule) & {"collect", "table", "table4", "curves", "synthesize", "download"})
    assert not local, f"local rules were submitted to SLURM: {local}"
