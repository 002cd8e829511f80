# A real single-node SLURM cluster on loopback, for the workflow's SLURM tests. Source this file, then:
#   slurm_install   Debian's slurmctld, slurmd, slurm-client and munge (root, apt)
#   slurm_up DIR    state, logs and munge key under DIR; slurm.conf and gres.conf in /etc/slurm, where
#                   every SLURM command looks (the executor plugin runs `srun` inside a job with the
#                   job's SLURM_* variables removed, SLURM_CONF included); start munged, slurmctld and
#                   slurmd as root; wait until the node is idle
#   slurm_down      cancel the cluster's jobs, stop the daemons slurm_up started, by the pids it recorded
#                   (nothing else), and remove the config files it wrote
#
# The node offers the machine's CPUs, 80% of its memory and SLURM_TEST_GPUS fake GPUs (a GRES whose
# device files are /dev/null, /dev/zero, ...: SLURM schedules --gpus requests on it and sets
# CUDA_VISIBLE_DEVICES, no GPU is there). proctrack/linuxproc and task/none: no cgroups needed.
# No slurmdbd: sacct does not work; the workflow's profile then needs `slurm-status-command: squeue`,
# which is reliable while MinJobAge (300 s here) is at least 3x the first status-check delay.

SLURM_TEST_PARTITION=${SLURM_TEST_PARTITION:-gpu}
SLURM_TEST_GPUS=${SLURM_TEST_GPUS:-2}
SLURM_TEST_PIDS=()
SLURM_TEST_ETC=/etc/slurm
SLURM_TEST_MARK="# written by sftrl tests/slurm/cluster.sh"

slurm_install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        && command -v munged >/dev/null; then
        return 0
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
}

slurm_up() {
    local dir=$1 cpus mem_mb gpu_files=(/dev/null /dev/zero /dev/full /dev/random) i
    if ((SLURM_TEST_GPUS > ${#gpu_files[@]})); then
        echo "slurm_up: at most ${#gpu_files[@]} fake GPUs" >&2
        return 1
    fi
    mkdir -p "$dir"/{ctld,spool,log}
    chmod 700 "$dir"
    cpus=$(nproc)
    mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)

    # munge: a key and a socket of our own, so no system munged is touched
    head -c 1024 /dev/urandom >"$dir/munge.key"
    chmod 400 "$dir/munge.key"
    munged --force --foreground --socket="$dir/munge.socket" --key-file="$dir/munge.key" \
        --pid-file="$dir/munged.pid" --seed-file="$dir/munge.seed" --log-file="$dir/log/munged.log" \
        >"$dir/log/munged.out" 2>&1 &
    SLURM_TEST_PIDS+=($!)

    local file
    for file in slurm.conf gres.conf; do
        if [[ -e $SLURM_TEST_ETC/$file ]] && ! grep -qxF "$SLURM_TEST_MARK" "$SLURM_TEST_ETC/$file"; then
            echo "slurm_up: $SLURM_TEST_ETC/$file exists and is not ours; not touching a configured SLURM" >&2
            return 1
        fi
    done
    mkdir -p "$SLURM_TEST_ETC"
    cat >"$SLURM_TEST_ETC/slurm.conf" <<EOF
$SLURM_TEST_MARK
ClusterName=sftrl-test
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=26817
SlurmdPort=26818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/ctld
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MinJobAge=300
KillWait=5
ReturnToService=2
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb Gres=gpu:$SLURM_TEST_GPUS State=UNKNOWN
PartitionName=$SLURM_TEST_PARTITION Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    {
        echo "$SLURM_TEST_MARK"
        echo "AutoDetect=off"
        for ((i = 0; i < SLURM_TEST_GPUS; i++)); do
            echo "NodeName=localhost Name=gpu File=${gpu_files[i]}"
        done
    } >"$SLURM_TEST_ETC/gres.conf"
    export SLURM_CONF=$SLURM_TEST_ETC/slurm.conf

    slurmctld -D -c -f "$SLURM_CONF" >"$dir/log/slurmctld.out" 2>&1 &
    SLURM_TEST_PIDS+=($!)
    slurmd -D -N localhost -f "$SLURM_CONF" >"$dir/log/slurmd.out" 2>&1 &
    SLURM_TEST_PIDS+=($!)

    local waited=0
    until sinfo -h -N -o "%T" 2>/dev/null | grep -qx idle; do
        sleep 1
        if ((++waited > 60)); then
            echo "slurm_up: the node is not idle after 60 s:" >&2
            sinfo -N -l >&2 || true
            tail -n 20 "$dir"/log/*.log "$dir"/log/*.out >&2 || true
            return 1
        fi
    done
    echo "slurm_up: node localhost idle after ${waited} s ($cpus CPUs, $mem_mb MB, $SLURM_TEST_GPUS fake GPUs)"
}

slurm_down() {
    local pid i file
    # jobs first: their slurmstepd processes are not children of slurmd
    if [[ -n ${SLURM_CONF:-} ]] && ((${#SLURM_TEST_PIDS[@]})); then
        squeue -h -o %i 2>/dev/null | xargs -r scancel 2>/dev/null || true
        for _ in $(seq 30); do
            [[ -z $(squeue -h -t running,completing -o %i 2>/dev/null) ]] && break
            sleep 1
        done
    fi
    # newest first: slurmd, slurmctld, munged
    for ((i = ${#SLURM_TEST_PIDS[@]} - 1; i >= 0; i--)); do
        pid=${SLURM_TEST_PIDS[i]}
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
            wait "$pid" 2>/dev/null || true
        fi
    done
    SLURM_TEST_PIDS=()
    for file in slurm.conf gres.conf; do
        if [[ -e $SLURM_TEST_ETC/$file ]] && grep -qxF "$SLURM_TEST_MARK" "$SLURM_TEST_ETC/$file"; then
            rm -f "$SLURM_TEST_ETC/$file"
        fi
    done
}
