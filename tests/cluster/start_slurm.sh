#!/usr/bin/env bash
# Start a real single-node SLURM (munge + slurmctld + slurmd) on this machine, for tests and demos.
#
#   sudo tests/cluster/start_slurm.sh        # idempotent: re-running only starts what is not running
#   tests/cluster/stop_slurm.sh              # stops exactly the daemons this script started
#
# No systemd is assumed (containers): the daemons are started by hand and their PIDs recorded under
# $FCN_SLURM_STATE (default /tmp/fcn-slurm). The node advertises two fake GPUs (GRES gpu:fake:2, character
# devices cloned from /dev/null) so that `--gpus=1` schedules and SLURM sets CUDA_VISIBLE_DEVICES in the job.
# The config goes to /etc/slurm (where sbatch & co. look); with FCN_SLURM_CONF_DIR=elsewhere, export
# SLURM_CONF=elsewhere/slurm.conf for the clients too.
# Exit codes: 0 = SLURM up, 3 = packages missing and could not be installed, 1 = anything else.
set -euo pipefail

STATE=${FCN_SLURM_STATE:-/tmp/fcn-slurm}
CONF_DIR=${FCN_SLURM_CONF_DIR:-/etc/slurm}
MARKER="# written by fcn-pipeline tests/cluster/start_slurm.sh"
export SLURM_CONF=$CONF_DIR/slurm.conf   # daemons, scontrol and sinfo below read this one
NODE=$(hostname -s)
say() { echo "[start_slurm] $*"; }

if [[ $(id -u) -ne 0 ]]; then
    echo "[start_slurm] error: must run as root (installs packages, starts slurmd); re-run with sudo" >&2
    exit 1
fi

# --- 1. packages -------------------------------------------------------------------------------------
need=()
for pair in munge:munged slurmctld:slurmctld slurmd:slurmd slurm-client:sbatch; do
    pkg=${pair%%:*}; bin=${pair##*:}
    command -v "$bin" >/dev/null 2>&1 || [[ -x /usr/sbin/$bin ]] || need+=("$pkg")
done
if ((${#need[@]})); then
    say "installing ${need[*]} (apt-get)"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; } \
        >"/tmp/fcn-slurm-apt.log" 2>&1; then
        echo "[start_slurm] error: apt-get install ${need[*]} failed (see /tmp/fcn-slurm-apt.log)" >&2
        exit 3
    fi
else
    say "packages present (munge, slurmctld, slurmd, slurm-client)"
fi

mkdir -p "$STATE"/{log,ctld,spool} "$CONF_DIR"

# A running daemon is one whose PID file names a live process with the expected command name.
alive() {  # alive <pidfile> <comm>
    [[ -s $1 ]] || return 1
    local pid; pid=$(<"$1")
    [[ -r /proc/$pid/comm ]] && [[ $(</proc/"$pid"/comm) == "$2" ]]
}

# --- 2. configuration (never overwrite a slurm.conf somebody else wrote) -------------------------------
if [[ -e $CONF_DIR/slurm.conf ]] && ! grep -qF "$MARKER" "$CONF_DIR/slurm.conf"; then
    echo "[start_slurm] error: $CONF_DIR/slurm.conf exists and was not written by this script;" \
        "refusing to overwrite it (set FCN_SLURM_CONF_DIR to use another directory)" >&2
    exit 1
fi
cpus=$(nproc)
mem_mb=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
conf_tmp=$(mktemp)
cat >"$conf_tmp" <<EOF
$MARKER
ClusterName=fcnlocal
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# loopback only: do not listen on every interface
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
# no cgroups in a container
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# no slurmdbd: sacct does not work, use squeue for status (see docs/cluster.md)
AccountingStorageType=accounting_storage/none
# finished jobs stay visible to squeue for 5 min (must be >= 3x the status-check interval)
MinJobAge=300
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# without a default, a job without --mem would take the whole node
DefMemPerCPU=1000
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE CPUs=$cpus RealMemory=$mem_mb Gres=gpu:fake:2 State=UNKNOWN
# the partition names profiles/slurm uses: CPU jobs -> main, train/evaluate -> gpu (same node here)
PartitionName=main Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE MaxTime=INFINITE State=UP
EOF
gres_tmp=$(mktemp)
cat >"$gres_tmp" <<EOF
$MARKER
AutoDetect=off
# fake GPUs: File= is required (without it the node goes INVAL), must be a character device, must
# differ per GPU (duplicates are fatal), and its trailing digit becomes the CUDA_VISIBLE_DEVICES index
NodeName=$NODE Name=gpu Type=fake File=$STATE/dev/fakegpu0
NodeName=$NODE Name=gpu Type=fake File=$STATE/dev/fakegpu1
EOF
# the fake devices are clones of /dev/null (char 1:3): harmless if anything opens them
mkdir -p "$STATE/dev"
for n in 0 1; do
    if [[ ! -c $STATE/dev/fakegpu$n ]]; then
        rm -f "$STATE/dev/fakegpu$n"
        mknod -m 0666 "$STATE/dev/fakegpu$n" c 1 3 || { echo "[start_slurm] error: mknod failed" \
            "(no CAP_MKNOD?); fake GPU GRES needs a character device per GPU" >&2; exit 1; }
    fi
done
conf_changed=0
for f in slurm.conf gres.conf; do
    src=$conf_tmp; [[ $f == gres.conf ]] && src=$gres_tmp
    if ! cmp -s "$src" "$CONF_DIR/$f"; then
        install -m 0644 "$src" "$CONF_DIR/$f"; conf_changed=1; say "wrote $CONF_DIR/$f"
    fi
done
rm -f "$conf_tmp" "$gres_tmp"
[[ $conf_changed == 1 ]] || say "$CONF_DIR/slurm.conf and gres.conf up to date"

# --- 3. munge ----------------------------------------------------------------------------------------
if [[ ! -s /etc/munge/munge.key ]]; then
    say "creating /etc/munge/munge.key"
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown munge:munge /etc/munge /etc/munge/munge.key; chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
if alive "$STATE/munged.pid" munged; then
    say "munged already running (pid $(<"$STATE/munged.pid"))"
elif munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    # someone else's munged answers on the default socket: use it, but do not claim (or later stop) it
    say "a munged not started by this script is running; using it"
else
    runuser -u munge -- /usr/sbin/munged --force --pid-file=/run/munge/munged.pid
    for _ in $(seq 50); do [[ -s /run/munge/munged.pid ]] && break; sleep 0.1; done
    cp /run/munge/munged.pid "$STATE/munged.pid"
    say "started munged (pid $(<"$STATE/munged.pid"))"
fi

# --- 4. slurmctld, slurmd ----------------------------------------------------------------------------
if alive "$STATE/slurmctld.pid" slurmctld; then
    if [[ $conf_changed == 1 ]]; then scontrol reconfigure && say "slurmctld reconfigured"; fi
    say "slurmctld already running (pid $(<"$STATE/slurmctld.pid"))"
else
    /usr/sbin/slurmctld || true   # daemonises and writes SlurmctldPidFile; checked below
    for _ in $(seq 100); do alive "$STATE/slurmctld.pid" slurmctld && break; sleep 0.1; done
    alive "$STATE/slurmctld.pid" slurmctld || { echo "[start_slurm] error: slurmctld did not start;" \
        "see $STATE/log/slurmctld.log" >&2; exit 1; }
    say "started slurmctld (pid $(<"$STATE/slurmctld.pid"))"
fi
if alive "$STATE/slurmd.pid" slurmd; then
    say "slurmd already running (pid $(<"$STATE/slurmd.pid"))"
else
    /usr/sbin/slurmd -N "$NODE" || true   # checked below
    for _ in $(seq 100); do alive "$STATE/slurmd.pid" slurmd && break; sleep 0.1; done
    alive "$STATE/slurmd.pid" slurmd || { echo "[start_slurm] error: slurmd did not start;" \
        "see $STATE/log/slurmd.log" >&2; exit 1; }
    say "started slurmd (pid $(<"$STATE/slurmd.pid"))"
fi

# --- 5. wait for the node ----------------------------------------------------------------------------
state=""
for i in $(seq 60); do
    state=$(sinfo -h -N -n "$NODE" -o %t 2>/dev/null | head -1 || true)
    case $state in
        idle|mix|alloc) break ;;
        # a node left DOWN/INVAL by an earlier bad config: bring it back once the config is fixed
        down*|inval*|drain*)
            if ((i % 5 == 1)); then scontrol update nodename="$NODE" state=resume 2>/dev/null || true; fi ;;
    esac
    sleep 1
done
case $state in
    idle|mix|alloc) say "node $NODE is $state: $(sinfo -h -N -n "$NODE" -o '%c CPUs, %m MB, %G' | head -1)" ;;
    *) echo "[start_slurm] error: node $NODE is '${state:-unknown}' after 60 s; see $STATE/log/" >&2; exit 1 ;;
esac
