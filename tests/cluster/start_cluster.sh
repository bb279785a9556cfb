#!/usr/bin/env bash
# Start a throw-away one-node SLURM cluster (munged + slurmctld + slurmd) on 127.0.0.1, entirely inside DIR.
#
#   tests/cluster/start_cluster.sh DIR
#
# Needs root and the Debian packages slurmctld slurmd slurm-client munge (no systemd: the daemons are started by
# hand with absolute paths). Everything it writes lives in DIR (munge key, slurm.conf, gres.conf, state, spool,
# logs, pid files, fake GPU device links), except the munge socket (in /run/svf-munge.XXXXXX, see below) and one
# symlink /etc/slurm/slurm.conf -> DIR/etc/slurm.conf:
# the slurm jobstep executor strips every SLURM_* variable (SLURM_CONF too) before its inner `srun`, so that srun
# only finds the configuration at the compiled-in default path. The link is made only when no real file is there,
# and stop_cluster.sh removes it. On success DIR/cluster.env holds the settings a client needs (source it).
#
# The node declares fake GPUs as GRES (AutoDetect=off, File= symlinks to /dev/null), so `--gpus=1` requests are
# accepted and slurmd sets CUDA_VISIBLE_DEVICES; nothing runs on a GPU. Job status: no accounting daemon is run,
# MinJobAge is 600 s so finished jobs stay visible to `squeue --states=all` long enough for the snakemake slurm
# plugin's status polling (`--slurm-status-command squeue`); see docs/cluster.md for why.
#
# Environment knobs (all optional):
#   SVF_CLUSTER_GPUS     fake GPUs on the node (default 2; real cores here are 2, so 2 concurrent GPU jobs)
#   SVF_CLUSTER_CPUS     CPUs the node declares (default 16, more than the machine has, so that the production
#                        profile's cpus_per_gpu fits; task/none binds nothing, so this only limits packing)
#   SVF_CLUSTER_MEM_MB   memory the node declares (default 262144, so the production profile's mem_mb fits;
#                        memory is not a consumable resource here: SelectTypeParameters=CR_Core)
#   SVF_CLUSTER_WAIT     seconds to wait for another test cluster that holds /etc/slurm/slurm.conf (default 0)
#   SVF_CLUSTER_TIMEOUT  seconds to wait for the node to become idle (default 60)
#   SVF_CLUSTER_OWNER_PID  pid of the process that owns this cluster (the test); if it dies without stopping the
#                        cluster, the next start_cluster.sh stops the orphan instead of waiting for it
#   SVF_CLUSTER_PYTHON   the Python for the script's small helpers (default python3; the tests pass their own,
#                        which may be the only Python on the PATH, e.g. python3.12)
set -euo pipefail
PYTHON=${SVF_CLUSTER_PYTHON:-python3}

usage() { echo "usage: $0 DIR   (an empty or new directory; absolute or relative)" >&2; exit 2; }
[ $# -eq 1 ] || usage

ETC_LINK=/etc/slurm/slurm.conf
LOCK=/run/lock/svf-test-slurm.lock
GPUS=${SVF_CLUSTER_GPUS:-2}
CPUS=${SVF_CLUSTER_CPUS:-16}
MEM_MB=${SVF_CLUSTER_MEM_MB:-262144}
WAIT_LINK=${SVF_CLUSTER_WAIT:-0}
TIMEOUT=${SVF_CLUSTER_TIMEOUT:-60}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() { echo "start_cluster.sh: ERROR: $*" >&2; exit 1; }

# --- preconditions -------------------------------------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || die "must run as root (slurmd starts jobs as their user; munged/slurm state is root-owned)"
for bin in /usr/sbin/munged /usr/sbin/slurmctld /usr/sbin/slurmd /usr/bin/scontrol /usr/bin/sinfo /usr/bin/sbatch \
           /usr/bin/squeue /usr/bin/srun /usr/bin/munge /usr/bin/unmunge; do
    [ -x "$bin" ] || die "$bin not found: apt-get install slurmctld slurmd slurm-client munge"
done
mkdir -p "$1"
DIR=$(cd "$1" && pwd -P)   # daemons need absolute paths (they chdir), and /proc/<pid> checks compare them
[ -z "$(ls -A "$DIR")" ] || die "$DIR is not empty; use a fresh directory (a previous cluster's state would be recovered)"

# --- layout --------------------------------------------------------------------------------------------------
mkdir -p "$DIR"/{etc,state,spool,log,run,dev,munge}
CONF=$DIR/etc/slurm.conf
# The munge socket is the one thing not in DIR: munged insists that every directory above its socket is
# searchable by all and the socket directory itself is 0755 (pytest's temporary directories are 0700), and a
# unix socket path must stay under 108 bytes. A short private directory under /run satisfies both;
# stop_cluster.sh deletes it.
MUNGE_RUN=$(mktemp -d /run/svf-munge.XXXXXX)
chmod 0755 "$MUNGE_RUN"
echo "$MUNGE_RUN" > "$DIR/munge/socket_dir"
MUNGE_SOCKET=$MUNGE_RUN/munge.socket.2

# Two free TCP ports on 127.0.0.1 (slurmctld, slurmd), so several clusters or a real slurmd on 6817/6818 cannot
# collide. The tiny race between closing and the daemon binding is acceptable for a test fixture.
read -r CTLD_PORT SLURMD_PORT < <("$PYTHON" - <<'PY'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
PY
)
NODE=$(hostname -s)

# --- munge ---------------------------------------------------------------------------------------------------
# A fresh key per cluster: the credentials of this cluster are worthless anywhere else.
dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
chmod 0600 "$DIR/munge/munge.key"

# --- fake GPUs -----------------------------------------------------------------------------------------------
# gres/gpu wants character devices: symlinks to /dev/null pass (a plain file is rejected, and a Count= without
# File= makes slurmd report fewer GPUs than configured, which drains the node).
for ((i = 0; i < GPUS; i++)); do ln -s /dev/null "$DIR/dev/nvidia$i"; done

# --- slurm.conf / gres.conf ----------------------------------------------------------------------------------
cat > "$CONF" <<EOF
# Generated by tests/cluster/start_cluster.sh for a throw-away one-node test cluster. Do not use in production.
ClusterName=svftest
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups in this VM/container: track processes through /proc and do not bind tasks.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SwitchType=switch/none
MpiDefault=none
# No slurmdbd: job status comes from slurmctld itself. Keep finished jobs for 10 minutes, more than 3x the
# snakemake slurm plugin's initial status delay, which is the plugin's own condition for trusting squeue.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=600
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
# Use the declared CPUs/memory instead of what slurmd detects, so production-sized requests fit on this box.
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=5
InactiveLimit=0
Waittime=0
MessageTimeout=10
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:$GPUS State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
{
    echo "# Fake GPUs: symlinks to /dev/null; AutoDetect=off so slurmd does not look for NVML."
    echo "AutoDetect=off"
    if [ "$GPUS" -gt 0 ]; then
        echo "NodeName=$NODE Name=gpu File=$DIR/dev/nvidia[0-$((GPUS - 1))]"
    fi
} > "$DIR/etc/gres.conf"

cat > "$DIR/cluster.env" <<EOF
# Source this to talk to the test cluster in $DIR.
export SLURM_CONF=$CONF
SVF_CLUSTER_DIR=$DIR
SVF_CLUSTER_NODE=$NODE
SVF_CLUSTER_GPUS=$GPUS
EOF
export SLURM_CONF=$CONF

# --- failure handling ----------------------------------------------------------------------------------------
show_logs() {
    for f in "$DIR"/munge/munged.log "$DIR"/log/slurmctld.log "$DIR"/log/slurmd.log; do
        [ -f "$f" ] || continue
        echo "----- last lines of $f -----" >&2
        tail -n 40 "$f" >&2
    done
}
fail() {
    echo "start_cluster.sh: ERROR: $*" >&2
    show_logs
    echo "start_cluster.sh: stopping what was started" >&2
    "$HERE/stop_cluster.sh" "$DIR" >&2 || true
    exit 1
}

# --- /etc/slurm/slurm.conf link --------------------------------------------------------------------------------
# flock makes check-and-link atomic against a second test cluster starting at the same moment.
# The link may belong to another test cluster. It is taken over when that cluster is dead (its slurmctld is gone)
# or orphaned (the process that started it, SVF_CLUSTER_OWNER_PID, is gone: e.g. a killed pytest); then that
# cluster's leftover daemons are stopped by stop_cluster.sh, by their pid files.
other_cluster_is_gone() {
    local target other pid owner
    target=$(readlink "$ETC_LINK") || return 1
    other=$(dirname "$(dirname "$target")")
    # Still starting (its start_cluster.sh runs: the link is made before the daemons start) counts as alive.
    pid=$(cat "$other/run/start.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then return 1; fi
    pid=$(cat "$other/run/slurmctld.pid" 2>/dev/null || true)
    { [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; } || { echo "$other"; return 0; }
    owner=$(cat "$other/run/owner.pid" 2>/dev/null || true)
    if [ -n "$owner" ] && ! kill -0 "$owner" 2>/dev/null; then echo "$other"; return 0; fi
    return 1
}
mkdir -p /etc/slurm /run/lock
echo $$ > "$DIR/run/start.pid"
trap 'rm -f "$DIR/run/start.pid"' EXIT
if [ -n "${SVF_CLUSTER_OWNER_PID:-}" ]; then echo "$SVF_CLUSTER_OWNER_PID" > "$DIR/run/owner.pid"; fi
deadline=$((SECONDS + WAIT_LINK))
while :; do
    exec 9>"$LOCK"
    flock 9   # check-and-link must be atomic against a second test cluster starting at the same moment
    if [ ! -e "$ETC_LINK" ] && [ ! -L "$ETC_LINK" ]; then
        ln -s "$CONF" "$ETC_LINK"
        touch "$DIR/run/etc_link"   # tells stop_cluster.sh that this cluster owns the link
        exec 9>&-
        break
    fi
    if [ ! -L "$ETC_LINK" ]; then
        exec 9>&-
        die "$ETC_LINK is a real file (a real SLURM installation?); not overwriting it. The jobstep's inner srun" \
            "would read it instead of $CONF, so this test cluster cannot run jobs here."
    fi
    if [ ! -e "$ETC_LINK" ]; then   # dangling: its directory was deleted
        echo "start_cluster.sh: removing dangling link $ETC_LINK -> $(readlink "$ETC_LINK")" >&2
        rm -f "$ETC_LINK"
        exec 9>&-
        continue
    fi
    gone=$(other_cluster_is_gone) || gone=""
    exec 9>&-   # stop_cluster.sh takes the same lock
    if [ -n "$gone" ]; then
        echo "start_cluster.sh: the test cluster in $gone is dead or orphaned; stopping it and taking over $ETC_LINK" >&2
        "$HERE/stop_cluster.sh" "$gone" >&2 || true
        exec 9>"$LOCK"; flock 9
        # stop_cluster.sh removes the link only if that cluster recorded owning it; make sure it is gone.
        if [ -L "$ETC_LINK" ] && [ "$(readlink "$ETC_LINK")" = "$gone/etc/slurm.conf" ]; then rm -f "$ETC_LINK"; fi
        exec 9>&-
        continue
    fi
    if [ $SECONDS -ge $deadline ]; then
        die "another live test cluster owns $ETC_LINK -> $(readlink "$ETC_LINK"); stop it with" \
            "tests/cluster/stop_cluster.sh <its dir>, or set SVF_CLUSTER_WAIT=<seconds> to wait for it"
    fi
    sleep 2
done

# --- daemons -------------------------------------------------------------------------------------------------
t0=$(date +%s.%N)
/usr/sbin/munged --socket="$MUNGE_SOCKET" --key-file="$DIR/munge/munge.key" --pid-file="$DIR/munge/munged.pid" \
    --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munged.seed" --num-threads=2 \
    || fail "munged did not start"
# Round-trip a credential before starting slurm: a broken munge otherwise shows up as obscure auth errors.
for _ in $(seq 50); do
    /usr/bin/munge --socket="$MUNGE_SOCKET" -n 2>/dev/null | /usr/bin/unmunge --socket="$MUNGE_SOCKET" >/dev/null 2>&1 \
        && break
    sleep 0.1
done
/usr/bin/munge --socket="$MUNGE_SOCKET" -n | /usr/bin/unmunge --socket="$MUNGE_SOCKET" >/dev/null \
    || fail "munge credential round trip failed"

# -s: chdir to the state/log directories instead of /, so core files and relative paths stay inside DIR.
/usr/sbin/slurmctld -f "$CONF" -s || fail "slurmctld did not start"
/usr/sbin/slurmd -f "$CONF" -N "$NODE" -s || fail "slurmd did not start"

# --- wait until the node is idle -----------------------------------------------------------------------------
state=""
deadline=$((SECONDS + TIMEOUT))
alive() { local pid; pid=$(cat "$1" 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }
while [ $SECONDS -lt $deadline ]; do
    # A daemon that exits during start-up (bad config) is reported at once instead of after the timeout.
    alive "$DIR/run/slurmctld.pid" || { sleep 0.5; alive "$DIR/run/slurmctld.pid"; } || fail "slurmctld exited"
    alive "$DIR/run/slurmd.pid" || { sleep 0.5; alive "$DIR/run/slurmd.pid"; } || fail "slurmd exited"
    state=$(/usr/bin/sinfo -h -N -n "$NODE" -o %T 2>/dev/null || true)
    [ "$state" = idle ] && break
    case "$state" in drain*|down*|fail*) fail "node $NODE is '$state': $(/usr/bin/scontrol show node "$NODE" | grep -i reason)";; esac
    sleep 0.2
done
[ "$state" = idle ] || fail "node $NODE not idle after ${TIMEOUT}s (state: '${state:-no answer from slurmctld}')"
t1=$(date +%s.%N)
up=$("$PYTHON" -c "print(f'{$t1 - $t0:.2f}')")
# For the tests: start-up time of the daemons alone, without the wait for another cluster's /etc link.
echo "SVF_CLUSTER_UP_SECONDS=$up" >> "$DIR/cluster.env"
echo "start_cluster.sh: cluster up in $DIR: daemons started and node $NODE idle in $up s" \
    "(ports $CTLD_PORT/$SLURMD_PORT, $GPUS fake GPUs)"
