"""Write a JSON record of where this toy job ran: SLURM ids and GPU environment, plus `scontrol show job`.

Called by the toy workflow's rules; the cluster test reads the records to check that `train`/`evaluate` ran as
SLURM jobs with a GPU (and the resources of workflow/profiles/slurm) and that the local rules did not.
"""

import json
import os
import socket
import subprocess
import sys
import time

ENV_KEYS = (
    "SLURM_JOB_ID",
    "SLURM_STEP_ID",
    "SLURM_JOB_PARTITION",
    "SLURM_JOB_ACCOUNT",
    "SLURM_JOB_GPUS",
    "SLURM_STEP_GPUS",
    "SLURM_CPUS_ON_NODE",
    "SLURM_MEM_PER_NODE",
    "CUDA_VISIBLE_DEVICES",
)


def scontrol_job(job_id):
    """`scontrol show job -o ID` as a dict (key=value pairs); {} outside SLURM or when scontrol fails."""
    if not job_id:
        return {}
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip()}
    fields = {}
    for token in out.stdout.split():
        key, sep, value = token.partition("=")
        if sep:
            fields[key] = value
    return fields


def main(stage, name, out, *inputs):
    job_id = os.environ.get("SLURM_JOB_ID")
    record = {
        "stage": stage,
        "name": name,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "start": time.time(),
        "env": {key: os.environ.get(key) for key in ENV_KEYS},
        "scontrol": scontrol_job(job_id),
        "inputs": [json.load(open(path)) for path in inputs],
    }
    if job_id:
        # Long enough that two GPU jobs overlap, short enough for CI; the interrupt test sets a long sleep so that
        # it can stop the run while a job runs (sbatch --export=ALL passes the variable into the job).
        time.sleep(float(os.environ.get("SVF_TOY_JOB_SLEEP", "1")))
    record["end"] = time.time()
    with open(out + ".tmp", "w") as f:
        json.dump(record, f, indent=1)
    os.replace(out + ".tmp", out)


if __name__ == "__main__":
    main(*sys.argv[1:])
