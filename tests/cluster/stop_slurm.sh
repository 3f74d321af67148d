#!/usr/bin/env bash
# Stop the daemons tests/cluster/start_slurm.sh started — only those, by the PIDs it recorded.
# Leaves packages, /etc/slurm and the state dir in place (start_slurm.sh reuses them).
set -uo pipefail

STATE=${FCN_SLURM_STATE:-/tmp/fcn-slurm}
say() { echo "[stop_slurm] $*"; }

# Reverse start order: compute node, controller, then munge (which the others authenticate with).
for pair in slurmd:slurmd slurmctld:slurmctld munged:munged; do
    name=${pair%%:*}; comm=${pair##*:}; pidfile=$STATE/$name.pid
    if [[ ! -s $pidfile ]]; then say "$name: no PID file, not started by start_slurm.sh"; continue; fi
    pid=$(<"$pidfile")
    # only signal the process if the PID still belongs to that daemon (PIDs get reused)
    if [[ -r /proc/$pid/comm && $(</proc/"$pid"/comm) == "$comm" ]]; then
        kill -TERM "$pid"
        for _ in $(seq 50); do [[ -e /proc/$pid ]] || break; sleep 0.1; done
        if [[ -e /proc/$pid ]]; then kill -KILL "$pid"; say "$name (pid $pid) killed"; else say "$name (pid $pid) stopped"; fi
    else
        say "$name (pid $pid) was not running"
    fi
    rm -f "$pidfile"
done
