#!/usr/bin/env bash
# Stop the test cluster that start_cluster.sh started in DIR, by the pids in its pid files, and remove the
# /etc/slurm/slurm.conf link if this cluster made it. Idempotent: safe to call on a half-started or stopped
# cluster, and it never signals a process whose command line does not belong to this DIR (pid reuse).
#
#   tests/cluster/stop_cluster.sh DIR
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
[ -d "$1" ] || { echo "stop_cluster.sh: $1 does not exist; nothing to stop" >&2; exit 0; }
DIR=$(cd "$1" && pwd -P)
CONF=$DIR/etc/slurm.conf
ETC_LINK=/etc/slurm/slurm.conf
LOCK=/run/lock/svf-test-slurm.lock
export SLURM_CONF=$CONF
rc=0

# pid_of FILE PATTERN: the pid in FILE if that process is alive and its command line contains PATTERN.
pid_of() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$2" || return 1
    echo "$pid"
}

# stop NAME PIDFILE PATTERN: SIGTERM, wait up to 10 s, then SIGKILL.
stop() {
    local name=$1 pid
    pid=$(pid_of "$2" "$3") || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || { echo "stop_cluster.sh: stopped $name (pid $pid)"; return 0; }
        sleep 0.1
    done
    echo "stop_cluster.sh: $name (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    rc=1
}

# Cancel the jobs first, while slurmd still runs, so their slurmstepd and job processes end with them instead of
# surviving as orphans after slurmd is gone.
if ctld=$(pid_of "$DIR/run/slurmctld.pid" slurmctld) && [ -n "$ctld" ]; then
    jobs=$(timeout 10 squeue -h -o %i 2>/dev/null || true)
    if [ -n "$jobs" ]; then
        echo "stop_cluster.sh: cancelling jobs: ${jobs//$'\n'/ }"
        # shellcheck disable=SC2086
        timeout 10 scancel --full $jobs 2>/dev/null || true
        for _ in $(seq 100); do
            [ -z "$(timeout 10 squeue -h -t PD,R,CG,S -o %i 2>/dev/null || true)" ] && break
            sleep 0.1
        done
    fi
fi

stop slurmd "$DIR/run/slurmd.pid" "slurmd -f $CONF"
stop slurmctld "$DIR/run/slurmctld.pid" "slurmctld -f $CONF"
stop munged "$DIR/munge/munged.pid" "$DIR/munge/"
# The munge socket directory start_cluster.sh made under /run (only a directory of exactly that shape).
sockdir=$(cat "$DIR/munge/socket_dir" 2>/dev/null || true)
if [[ "$sockdir" =~ ^/run/svf-munge\.[A-Za-z0-9]+$ ]] && [ -d "$sockdir" ]; then
    rm -rf -- "$sockdir"
    rm -f "$DIR/munge/socket_dir"
fi

# Remove the /etc link only if this cluster made it and it still points here (another cluster may own it now).
if [ -e "$DIR/run/etc_link" ]; then
    exec 9>"$LOCK"
    flock 9
    if [ -L "$ETC_LINK" ] && [ "$(readlink "$ETC_LINK")" = "$CONF" ]; then
        rm -f "$ETC_LINK"
        echo "stop_cluster.sh: removed $ETC_LINK"
    fi
    rm -f "$DIR/run/etc_link"
    exec 9>&-
fi
exit $rc
