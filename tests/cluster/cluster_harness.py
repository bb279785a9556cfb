"""Helpers for the SLURM integration tests (tests/cluster): the cluster handle, a time-limited snakemake runner,
and readers for workflow/profiles/slurm. The fixture that starts and stops the cluster is in conftest.py."""

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PROFILE_DIR = REPO / "workflow" / "profiles" / "slurm"
START = HERE / "start_cluster.sh"
STOP = HERE / "stop_cluster.sh"
PACKAGES = "slurmctld slurmd slurm-client munge"


def start_env(**knobs: str) -> dict:
    """The environment of start_cluster.sh: this process owns the cluster (an orphan is stopped by the next start),
    the script's helpers use this interpreter (it may be the only Python on the PATH), plus SVF_CLUSTER_* knobs."""
    return dict(os.environ, SVF_CLUSTER_OWNER_PID=str(os.getpid()), SVF_CLUSTER_PYTHON=sys.executable, **knobs)
REQUIRED = (
    "/usr/sbin/munged",
    "/usr/sbin/slurmctld",
    "/usr/sbin/slurmd",
    "/usr/bin/sbatch",
    "/usr/bin/squeue",
    "/usr/bin/scontrol",
    "/usr/bin/srun",
)
# Test-only settings, passed on the command line so that workflow/profiles/slurm stays what users run:
# - squeue as status command: the test cluster has no accounting daemon, and the plugin's default (sacct, chosen
#   whenever the binary exists) cannot see jobs without one; MinJobAge=600 keeps finished jobs in squeue.
# - first status check after 2 s instead of 40 s, and a short latency-wait: a local disk has no NFS lag.
TEST_ARGS = (
    "--slurm-status-command", "squeue",
    "--slurm-init-seconds-before-status-checks", "2",
    "--latency-wait", "5",
)


def cluster_unavailable_reason():
    """Why the test cluster cannot run here, or None."""
    missing = [path for path in REQUIRED if not os.access(path, os.X_OK)]
    if missing:
        return (
            f"SLURM test cluster skipped: {', '.join(missing)} not installed "
            f"(apt-get install {PACKAGES}; .ci/run does this)"
        )
    if os.geteuid() != 0:
        return "SLURM test cluster skipped: start_cluster.sh needs root (it runs munged/slurmctld/slurmd)"
    if os.path.isfile("/etc/slurm/slurm.conf") and not os.path.islink("/etc/slurm/slurm.conf"):
        return (
            "SLURM test cluster skipped: /etc/slurm/slurm.conf is a real SLURM configuration; the test cluster "
            "needs that path for its own (it links it while it runs) and never replaces a real file"
        )
    return None


@dataclass
class Cluster:
    dir: Path
    conf: Path
    node: str
    gpus: int
    start_seconds: float  # daemons started until the node was idle (without waiting for another test cluster)

    def env(self, **extra):
        """Environment for clients (sbatch/squeue/snakemake) of this cluster."""
        env = dict(os.environ, SLURM_CONF=str(self.conf), **extra)
        # A SLURM allocation of the surrounding CI would leak into sbatch defaults.
        for key in list(env):
            if key.startswith(("SLURM_", "SBATCH_", "SRUN_")) and key != "SLURM_CONF" and key not in extra:
                del env[key]
        return env

    def squeue(self, name=None):
        """All jobs the controller still knows (MinJobAge=600 keeps finished ones) as dicts."""
        fields = ("JobID", "Name", "Comment", "State", "tres-per-job")
        cmd = ["squeue", "--states=all", "--noheader", "-O", ",".join(f"{f}:1000|" for f in fields)]
        if name:
            cmd += ["--name", name]
        out = subprocess.run(cmd, env=self.env(), capture_output=True, text=True, timeout=30, check=True).stdout
        jobs = []
        for line in out.splitlines():
            values = [v.strip() for v in line.split("|")]
            if len(values) >= len(fields):
                jobs.append(dict(zip(fields, values)))
        return jobs

    def logs(self, lines=40):
        """The tail of every daemon log, for failure messages."""
        parts = []
        for log in (self.dir / "munge/munged.log", self.dir / "log/slurmctld.log", self.dir / "log/slurmd.log"):
            if log.exists():
                tail = log.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"----- {log} (last {lines} lines) -----\n" + "\n".join(tail))
        return "\n".join(parts)


def read_cluster(directory):
    """The Cluster that start_cluster.sh started in `directory`, from its cluster.env."""
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


@dataclass
class Run:
    returncode: int
    timed_out: bool  # SIGINT was sent (time limit reached, or interrupt_when() said so)
    killed: bool  # snakemake did not exit within the grace period after SIGINT and was SIGKILLed
    seconds: float
    output: str


def job_rule(comment):
    """The rule of a job submitted by the slurm plugin, from its --comment ("rule_<rule>[_wildcards_<values>]")."""
    return comment.removeprefix("rule_").split("_wildcards_")[0]


def job_wildcards(comment):
    return comment.partition("_wildcards_")[2]


def _default_sigint():
    # A process started in the background of a non-interactive shell (`cmd &`, nohup) inherits SIGINT *ignored*,
    # and Python then installs no KeyboardInterrupt handler: the SIGINT below would do nothing. Restore it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_snakemake(args, cwd, env, timeout, interrupt_when=None):
    """Run snakemake with a hard time limit; its output goes to cwd/snakemake-<n>.out and into Run.output.

    Snakemake under the slurm executor ignores SIGTERM while it waits for jobs; SIGINT makes it cancel its SLURM
    jobs and exit. So when the time limit is reached, or as soon as `interrupt_when()` returns true (polled every
    0.5 s): SIGINT to its process group, 60 s grace, then SIGKILL.
    """
    cwd = Path(cwd)
    cwd.mkdir(parents=True, exist_ok=True)
    log_path = cwd / f"snakemake-{len(list(cwd.glob('snakemake-*.out')))}.out"
    cmd = [sys.executable, "-m", "snakemake", *map(str, args)]
    t0 = time.monotonic()
    timed_out = killed = False
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_default_sigint)
        while proc.poll() is None:
            if time.monotonic() - t0 > timeout or (interrupt_when is not None and interrupt_when()):
                timed_out = True
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    killed = True
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                break
            time.sleep(0.5)
    return Run(proc.returncode, timed_out, killed, time.monotonic() - t0, log_path.read_text(errors="replace"))


def profile():
    """workflow/profiles/slurm/profile.yaml as a dict."""
    return yaml.safe_load((PROFILE_DIR / "profile.yaml").read_text())


def slurm_time(runtime):
    """A Snakemake runtime ("12h", "90m", minutes as int) as SLURM prints a time limit ("12:00:00", "1-00:00:00")."""
    text = str(runtime).strip()
    units = {"d": 1440, "h": 60, "m": 1}
    minutes = int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(text)
    days, rest = divmod(minutes, 1440)
    clock = f"{rest // 60:02d}:{rest % 60:02d}:00"
    return f"{days}-{clock}" if days else clock
