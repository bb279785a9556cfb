"""Load test (not part of `make test`: it takes hours): the whole demo DAG through the production slurm profile on a
throw-away one-node cluster, then checks that no cell was lost or submitted twice and that every table is complete.

    .venv/bin/python tests/cluster/load_demo.py WORKDIR [--jobs 8] [--gpus 8] [--cpus 64]

Needs root and the Debian packages slurmctld slurmd slurm-client munge (as the cluster tests). WORKDIR must be new
or empty; the cluster lives in WORKDIR/cluster, the workflow's outputs in WORKDIR/run. `--gpus` is the number of fake
GPUs the node declares, i.e. how many train/evaluate jobs SLURM runs at once (here they share the machine's cores).
Prints a JSON summary (wall time, SLURM jobs per rule, duplicates, missing cells) and exits 1 when a check fails.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from cluster_harness import PROFILE_DIR, REPO, START, STOP, TEST_ARGS, Cluster, run_snakemake

DEMO_CONFIG = REPO / "config" / "demo.yaml"
GPU_RULES = ("train_base", "train", "evaluate")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--jobs", type=int, default=8, help="snakemake --jobs (default 8)")
    parser.add_argument("--gpus", type=int, default=8, help="fake GPUs on the node (default 8)")
    parser.add_argument("--cpus", type=int, default=64, help="CPUs the node declares (default 64: 8 GPUs x 8)")
    parser.add_argument("--target", default="demo", help="snakemake target (default demo: every table and figure)")
    parser.add_argument("--timeout", type=float, default=6 * 3600, help="seconds before SIGINT (default 6 h)")
    return parser.parse_args()


def start_cluster(directory, gpus, cpus):
    env = dict(os.environ, SVF_CLUSTER_GPUS=str(gpus), SVF_CLUSTER_CPUS=str(cpus), SVF_CLUSTER_OWNER_PID=str(os.getpid()))
    subprocess.run([str(START), str(directory)], env=env, check=True, timeout=600)
    settings = {}
    for line in (directory / "cluster.env").read_text().splitlines():
        key, sep, value = line.removeprefix("export ").partition("=")
        if sep and not line.startswith("#"):
            settings[key] = value
    return Cluster(
        dir=directory,
        conf=directory / "etc" / "slurm.conf",
        node=settings["SVF_CLUSTER_NODE"],
        gpus=int(settings["SVF_CLUSTER_GPUS"]),
        start_seconds=float(settings["SVF_CLUSTER_UP_SECONDS"]),
    )


def check_outputs(run_dir):
    """Cells with metrics, results.csv rows, and per table the shown values that have no reproduced number."""
    paths = yaml.safe_load(DEMO_CONFIG.read_text())["pathvars"]
    results = run_dir / paths["results"]
    metrics = sorted((results / "cells").rglob("metrics.json"))
    csv, comparison = results / "results.csv", results / "tables" / "comparison.csv"
    rows = len(pd.read_csv(csv)) if csv.is_file() else 0
    missing = {"comparison.csv": "not written"}
    if comparison.is_file():
        shown = pd.read_csv(comparison).query("shown")
        missing = shown[shown["reproduced"].isna()].groupby("table").size().to_dict()
    tables = sorted(p.name for p in (results / "tables").glob("table*.md"))
    return {"metrics_json": len(metrics), "results_csv_rows": rows, "tables": tables,
            "missing_values_per_table": missing}


def main():
    args = parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if any(args.workdir.iterdir()):
        sys.exit(f"{args.workdir} is not empty")
    workdir = args.workdir.resolve()
    cluster = start_cluster(workdir / "cluster", args.gpus, args.cpus)
    run_dir = workdir / "run"
    run_dir.mkdir()
    (run_dir / "config").symlink_to(REPO / "config")  # the Snakefile's relative configfile
    env = cluster.env(SLURM_ACCOUNT="svftest", SLURM_CPU_PARTITION="debug", SLURM_GPU_PARTITION="debug")

    # squeue forgets a finished job after MinJobAge (600 s): poll every 20 s and keep every job ever seen.
    seen, last_poll = {}, [0.0]

    def poll():
        if time.monotonic() - last_poll[0] >= 20:
            last_poll[0] = time.monotonic()
            try:
                for job in cluster.squeue():
                    seen[job["JobID"]] = job
            except subprocess.SubprocessError as error:
                print(f"squeue failed (retrying): {error}", file=sys.stderr)
        return False

    try:
        run = run_snakemake(
            [args.target, "--snakefile", REPO / "Snakefile", "--directory", run_dir, "--workflow-profile", PROFILE_DIR,
             "--jobs", args.jobs, *TEST_ARGS, "--configfile", DEMO_CONFIG],
            cwd=run_dir, env=env, timeout=args.timeout, interrupt_when=poll,
        )
        last_poll[0] = 0.0
        poll()
    finally:
        subprocess.run([str(STOP), str(workdir / "cluster")], timeout=300)

    by_rule = {}
    for job in seen.values():
        rule = job["Comment"].removeprefix("rule_").split("_wildcards_")[0]
        by_rule.setdefault(rule, []).append(job)
    duplicates, not_completed = {}, {}
    for rule, jobs in by_rule.items():
        cells = [job["Comment"] for job in jobs]
        duplicates[rule] = len(cells) - len(set(cells))
        not_completed[rule] = sorted(j["Comment"] for j in jobs if j["State"] != "COMPLETED")
    outputs = check_outputs(run_dir)
    summary = {
        "target": args.target, "jobs": args.jobs, "fake_gpus": args.gpus,
        "returncode": run.returncode, "timed_out": run.timed_out, "wall_seconds": round(run.seconds, 1),
        "slurm_jobs_per_rule": {rule: len(jobs) for rule, jobs in sorted(by_rule.items())},
        "gpu_requests": sorted({j["tres-per-job"] for j in seen.values()}),
        "duplicate_submissions": duplicates, "not_completed": not_completed, **outputs,
    }
    print(json.dumps(summary, indent=2))
    (workdir / "RESULT.json").write_text(json.dumps(summary, indent=2) + "\n")
    ok = (
        run.returncode == 0 and not run.timed_out and not any(duplicates.values())
        and not any(not_completed.values()) and not outputs["missing_values_per_table"]
        and outputs["metrics_json"] == outputs["results_csv_rows"] == len(by_rule.get("train", []))
        == len(by_rule.get("evaluate", []))
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
