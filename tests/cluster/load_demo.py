"""Load test (not part of `make test`: it takes hours): the whole demo DAG through the production slurm profile on a
throw-away one-node cluster, then checks that no cell was lost or submitted twice and that every table is complete.

    .venv/bin/python tests/cluster/load_demo.py WORKDIR [--jobs 8] [--gpus 8] [--cpus 64] [--target T ...]
    .venv/bin/python tests/cluster/load_demo.py WORKDIR --resume [--target T ...]   # after an interrupted run

Needs root and the Debian packages slurmctld slurmd slurm-client munge (as the cluster tests). WORKDIR must be new
or empty, unless --resume: then the workflow continues in WORKDIR/run on a fresh cluster, like a user who restarts
the same command after the controller was stopped. Each attempt N has its own cluster in WORKDIR/cluster-N and its
snakemake output in WORKDIR/run/snakemake-N.out. `--gpus` is the number of fake GPUs the node declares, i.e. how many
train/evaluate jobs SLURM runs at once (here they share the machine's cores).

Checks, over every attempt so far: no (rule, wildcards) submitted again after snakemake reported it finished, nor
twice within one attempt; every SLURM job of the last attempt COMPLETED; every table of the targets has a value in
every cell; a final dry run of the targets has nothing left to do. Prints a JSON summary (wall time, SLURM jobs per
rule, duplicates, tables) to stdout and WORKDIR/RESULT-N.json and exits 1 when a check fails.
"""

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

from cluster_harness import (PROFILE_DIR, REPO, START, STOP, TEST_ARGS, job_rule, read_cluster, run_snakemake,
                             start_env)

DEMO_CONFIG = REPO / "config" / "demo.yaml"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--jobs", type=int, default=8, help="snakemake --jobs (default 8)")
    parser.add_argument("--gpus", type=int, default=8, help="fake GPUs on the node (default 8)")
    parser.add_argument("--cpus", type=int, default=64, help="CPUs the node declares (default 64: 8 GPUs x 8)")
    parser.add_argument("--target", nargs="+", default=["demo"], help="snakemake targets (default demo: everything)")
    parser.add_argument("--resume", action="store_true", help="continue the workflow in WORKDIR/run")
    parser.add_argument("--timeout", type=float, default=6 * 3600, help="seconds before SIGINT (default 6 h)")
    return parser.parse_args()


def start_cluster(directory, gpus, cpus):
    env = start_env(SVF_CLUSTER_GPUS=str(gpus), SVF_CLUSTER_CPUS=str(cpus))
    subprocess.run([str(START), str(directory)], env=env, check=True, timeout=600)
    return read_cluster(directory)


SUBMITTED = re.compile(r"^Job (\d+) has been submitted with SLURM jobid (\d+) \(log: .*/rule_([^/]+)/(.+)/\d+\.log\)")
FINISHED = re.compile(r"^Finished jobid: (\d+) \(Rule: ([^)]+)\)")


def submissions(run_dir):
    """From every attempt's snakemake output, in order: SLURM submissions of a (rule, wildcards) made after
    snakemake had reported that same job finished (in this or an earlier attempt), or twice in one attempt."""
    finished, duplicates, per_rule = set(), [], {}
    for log in sorted(run_dir.glob("snakemake-*.out"), key=lambda p: int(p.stem.split("-")[1])):
        key_of, submitted_now = {}, set()
        for line in log.read_text(errors="replace").splitlines():
            if m := SUBMITTED.match(line):
                key = (m[3], m[4])
                key_of[m[1]] = key
                per_rule[m[3]] = per_rule.get(m[3], 0) + 1
                if key in finished or key in submitted_now:
                    duplicates.append(f"{log.name}: {m[3]} {m[4]}")
                submitted_now.add(key)
            elif (m := FINISHED.match(line)) and m[1] in key_of:
                finished.add(key_of[m[1]])
    return per_rule, duplicates


def check_tables(run_dir, targets):
    """Per table of the targets (all tables for `demo`/`all`): missing, or with a cell that has no result."""
    paths = yaml.safe_load(DEMO_CONFIG.read_text())["pathvars"]
    tables_dir = run_dir / paths["results"] / "tables"
    wanted = [t for t in targets if re.fullmatch(r"table\d+", t)]
    if set(targets) & {"demo", "all"}:
        wanted = yaml.safe_load((REPO / "config" / "tables.yaml").read_text())["tables"].keys()
    status = {}
    for name in wanted:
        md = tables_dir / f"{name}.md"
        status[name] = ("missing" if not md.is_file()
                        else "incomplete" if "no result yet" in md.read_text() else "complete")
    return status


def nothing_left(run_dir, targets, env):
    dry = subprocess.run(
        [sys.executable, "-m", "snakemake", *targets, "-n", "--snakefile", str(REPO / "Snakefile"), "--directory",
         str(run_dir), "--configfile", str(DEMO_CONFIG), "--workflow-profile", str(PROFILE_DIR)],
        cwd=run_dir, env=env, capture_output=True, text=True, timeout=600)
    return dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr


def main():
    args = parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    workdir = args.workdir.resolve()
    run_dir = workdir / "run"
    if args.resume:
        if not run_dir.is_dir():
            sys.exit(f"--resume: {run_dir} does not exist")
        # A controller that was killed leaves its lock; the user's next step is --unlock.
        subprocess.run([sys.executable, "-m", "snakemake", "--unlock", "--snakefile", str(REPO / "Snakefile"),
                        "--directory", str(run_dir), "--configfile", str(DEMO_CONFIG)],
                       cwd=run_dir, capture_output=True, timeout=600, check=True)
    elif any(workdir.iterdir()):
        sys.exit(f"{workdir} is not empty (use --resume to continue its run)")
    else:
        run_dir.mkdir()
        (run_dir / "config").symlink_to(REPO / "config")  # the Snakefile's relative configfile
    attempt = len(list(run_dir.glob("snakemake-*.out")))
    cluster_dir = workdir / f"cluster-{attempt}"
    cluster = start_cluster(cluster_dir, args.gpus, args.cpus)
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
            [*args.target, "--snakefile", REPO / "Snakefile", "--directory", run_dir, "--workflow-profile",
             PROFILE_DIR, "--jobs", args.jobs, *TEST_ARGS, "--configfile", DEMO_CONFIG],
            cwd=run_dir, env=env, timeout=args.timeout, interrupt_when=poll,
        )
        last_poll[0] = 0.0
        poll()
        (workdir / f"jobs-{attempt}.json").write_text(json.dumps(list(seen.values()), indent=1) + "\n")
        done = nothing_left(run_dir, args.target, env)
    finally:
        subprocess.run([str(STOP), str(cluster_dir)], timeout=300)

    per_rule, duplicates = submissions(run_dir)
    slurm_rules = {}
    for job in seen.values():
        slurm_rules.setdefault(job_rule(job["Comment"]), []).append(job)
    not_completed = sorted(j["Comment"] for j in seen.values() if j["State"] != "COMPLETED")
    tables = check_tables(run_dir, args.target)
    summary = {
        "attempt": attempt, "targets": args.target, "jobs": args.jobs, "fake_gpus": args.gpus,
        "returncode": run.returncode, "timed_out": run.timed_out, "wall_seconds": round(run.seconds, 1),
        "slurm_jobs_this_attempt": {rule: len(jobs) for rule, jobs in sorted(slurm_rules.items())},
        "submissions_all_attempts": dict(sorted(per_rule.items())),
        "gpu_requests": sorted({j["tres-per-job"] for j in seen.values()}),
        "duplicate_submissions": duplicates, "not_completed_this_attempt": not_completed,
        "tables": tables, "nothing_left_to_do": done,
    }
    text = json.dumps(summary, indent=2)
    print(text)
    (workdir / f"RESULT-{attempt}.json").write_text(text + "\n")
    ok = (run.returncode == 0 and not run.timed_out and not duplicates and not not_completed and done
          and all(status == "complete" for status in tables.values()))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
