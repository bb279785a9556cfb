"""Fixture for the SLURM integration tests: a throw-away one-node cluster per test module (stopped as soon as
the cluster tests are done, so it does not hold /etc/slurm/slurm.conf for the rest of a long test session).

start_cluster.sh starts it in a fresh temporary directory; stop_cluster.sh stops it in the fixture's teardown,
which also runs when a test fails. Without the Debian packages (slurmctld, slurmd, slurm-client, munge) or without
root the tests are skipped, with the reason in pytest's -ra summary.
"""

import os
import subprocess
import time
import warnings

import pytest

from cluster_harness import START, STOP, cluster_unavailable_reason, read_cluster, start_env


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    reason = cluster_unavailable_reason()
    if reason:
        pytest.skip(reason)
    directory = tmp_path_factory.mktemp("slurm")
    # Another engineer's test cluster may hold /etc/slurm/slurm.conf: wait for it rather than fail.
    env = start_env(SVF_CLUSTER_WAIT=os.environ.get("SVF_CLUSTER_WAIT", "900"))
    t0 = time.monotonic()
    started = subprocess.run([str(START), str(directory)], env=env, capture_output=True, text=True, timeout=1200)
    elapsed = time.monotonic() - t0
    if started.returncode != 0:
        subprocess.run([str(STOP), str(directory)], capture_output=True, timeout=120)
        pytest.fail(f"start_cluster.sh failed (exit {started.returncode}):\n{started.stdout}\n{started.stderr}")
    cluster = read_cluster(directory)
    print(f"\n{started.stdout.strip()}; start_cluster.sh took {elapsed:.2f} s in all")
    try:
        yield cluster
    finally:
        stopped = subprocess.run([str(STOP), str(directory)], capture_output=True, text=True, timeout=300)
        if stopped.returncode != 0:
            warnings.warn(f"stop_cluster.sh exit {stopped.returncode}:\n{stopped.stdout}\n{stopped.stderr}")
