#!/usr/bin/env bash
# The workflow on a real single-node SLURM cluster (tests/slurm/cluster.sh), as root:
#  1. the CI experiment up to its RL runs and spectra with `--profile profiles/slurm` (plus the test cluster's overlay); its SFT
#     job is cancelled (scancel) once its first ladder checkpoint is complete, the profile's retries
#     resubmit it as a new SLURM job, and it resumes from that checkpoint;
#  2. datasets, SFT checkpoints, evaluation samples and the SFT curve are byte-identical to a local run;
#  3. a rule that fails on its first attempt is resubmitted as a new SLURM job with twice the memory, and a
#     job asking for GPUs like the training rules gets one task that sees all of them;
#  4. refused before anything is submitted: more GPUs than a node has; squeue status queries with a
#     MinJobAge below 3x the first status-check delay.
# Prints PASS/FAIL per check and "N passed, N failed"; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
. tests/slurm/cluster.sh

if [[ $(id -u) != 0 ]]; then
    echo "tests/slurm/run.sh starts slurmctld and slurmd as root: run it as root" >&2
    exit 1
fi

SNAKEMAKE_TIMEOUT=${SNAKEMAKE_TIMEOUT:-1200}
WORK=$(mktemp -d /tmp/sftrl-slurm.XXXXXX)
WATCHER=
cleanup() {
    if [[ -n $WATCHER ]] && kill -0 "$WATCHER" 2>/dev/null; then
        kill "$WATCHER" 2>/dev/null || true
        wait "$WATCHER" 2>/dev/null || true
    fi
    slurm_down
    if [[ -z ${KEEP_SLURM_TEST:-} ]]; then rm -rf "$WORK"; else echo "kept $WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

passed=0
failed=0
check() { # check NAME COMMAND...: run a check, count it
    local name=$1
    shift
    if "$@"; then
        echo "PASS $name"
        passed=$((passed + 1))
    else
        echo "FAIL $name"
        failed=$((failed + 1))
    fi
}

# Snakemake ignores SIGTERM while it waits on jobs: bound it with SIGINT.
on_slurm() { # on_slurm WORKDIR ARGS...: the workflow's SLURM profile and the test cluster's overlay
    local dir=$1
    shift
    timeout -s INT "$SNAKEMAKE_TIMEOUT" snakemake --profile profiles/slurm --profile tests/slurm/profile \
        -s "$ROOT/Snakefile" -d "$dir" "$@"
}

slurm_install
t0=$(date +%s)
slurm_up "$WORK/cluster"
t_up=$(($(date +%s) - t0))

# --- 1. the CI experiment through SLURM, its SFT job cancelled after the first ladder checkpoint -------
# Up to its RL runs, spectra and report curves: every kind of job and resource request (datasets, the
# base, SFT, evaluation, PPO and GRPO, spectra, the roles checkpoint, local rules); the later stages
# (restoration, representations, plans, claims) ask for the same resources and run in tests/test_workflow.py.
SLURM_TARGETS=(results/ci/tables/rl_from_sft.csv results/ci/tables/spectrum_summary.csv
    results/ci/figures/success_vs_step.png)
SLURM_RUN=$WORK/slurm-run
mkdir -p "$SLURM_RUN"
cancel_sft_after_checkpoint() {
    local marker=$SLURM_RUN/results/ci/work/sft/checkpoint-10/sftrl-complete.json job
    for _ in $(seq 1800); do
        if [[ -f $marker ]]; then
            job=$(squeue -h -t running -o "%i %k" | awk '$2 == "rule_sft" {print $1; exit}')
            if [[ -n $job ]]; then
                scancel "$job"
                echo "$job" >"$WORK/cancelled-sft-job"
                return 0
            fi
        fi
        sleep 0.5
    done
}
cancel_sft_after_checkpoint &
WATCHER=$!
t0=$(date +%s)
rc=0
on_slurm "$SLURM_RUN" "${SLURM_TARGETS[@]}" --configfile tests/configs/ci.yaml >"$WORK/slurm-run.log" 2>&1 || rc=$?
t_slurm=$(($(date +%s) - t0))
wait "$WATCHER" || true
WATCHER=
if ((rc != 0)); then tail -n 60 "$WORK/slurm-run.log"; fi
check "CI experiment completes through SLURM (${t_slurm} s)" test "$rc" = 0

sbatch_ids() { # SLURM job ids the run log shows for a rule's submissions
    grep -oE "has been submitted with SLURM jobid [0-9]+ \(log: [^)]*/rule_$1/" "$WORK/slurm-run.log" |
        grep -oE "jobid [0-9]+" | cut -d' ' -f2
}
submitted=$(grep -c "has been submitted with SLURM jobid" "$WORK/slurm-run.log" || true)
check "jobs ran as SLURM jobs ($submitted submitted)" test "$submitted" -ge 15
cancelled=$(cat "$WORK/cancelled-sft-job" 2>/dev/null || true)
sft_jobs=$(sbatch_ids sft | sort -u | tr '\n' ' ')
check "cancelled SFT job $cancelled was resubmitted as a new SLURM job ($sft_jobs)" \
    test -n "$cancelled" -a "$(sbatch_ids sft | sort -u | wc -l)" = 2
check "the resubmitted SFT job resumed from its checkpoint" \
    grep -q "resuming from .*checkpoint-10" "$SLURM_RUN/results/ci/logs/sft/sft.log"

# --- 2. the same bytes as a local run ------------------------------------------------------------------
LOCAL_RUN=$WORK/local-run
t0=$(date +%s)
timeout -s INT "$SNAKEMAKE_TIMEOUT" snakemake results/ci/tables/sft_curve.csv --profile profiles/local \
    -s "$ROOT/Snakefile" -d "$LOCAL_RUN" --configfile tests/configs/ci.yaml >"$WORK/local-run.log" 2>&1 ||
    tail -n 40 "$WORK/local-run.log"
t_local=$(($(date +%s) - t0))
same_files() {
    local files file differ=0
    files=$(cd "$LOCAL_RUN/results/ci" && ls tables/sft_curve.csv data/*.jsonl models/*/model.safetensors \
        eval/*/*/samples.jsonl)
    [[ $(wc -w <<<"$files") -ge 20 ]] || return 1
    for file in $files; do
        if ! cmp -s "$LOCAL_RUN/results/ci/$file" "$SLURM_RUN/results/ci/$file"; then
            echo "  differs: $file"
            differ=1
        fi
    done
    return $differ
}
check "datasets, SFT checkpoints, evaluation samples and SFT curve equal the local run's" same_files

# --- 3. a failed job is resubmitted; a multi-GPU job is one task that sees every GPU --------------------
SMALL=$WORK/small
mkdir -p "$SMALL"
rc=0
on_slurm "$SMALL" -s "$ROOT/tests/slurm/Snakefile" >"$WORK/small.log" 2>&1 || rc=$?
if ((rc != 0)); then tail -n 40 "$WORK/small.log"; fi
check "a rule failing on its first attempt completes on resubmission" test "$rc" = 0 -a -f "$SMALL/flaky.txt"
two_attempts() {
    local jobs mems
    jobs=$(grep -oE "job=[0-9]+" "$SMALL/attempts.txt" | sort -u | wc -l)
    mems=$(grep -oE "MinMemoryNode=[0-9]+" "$SMALL/attempts.txt" | tr '\n' ' ')
    echo "  attempts: $(tr '\n' ' ' <"$SMALL/attempts.txt")"
    [[ $jobs == 2 && $mems == "MinMemoryNode=200 MinMemoryNode=400 " ]]
}
check "the retry is a new SLURM job with twice the memory" two_attempts
check "a 2-GPU job is one task that sees both GPUs" \
    grep -qx "CUDA_VISIBLE_DEVICES=0,1 SLURM_NTASKS=1" "$SMALL/multi_gpu.txt"

# --- 4. refused before submission ---------------------------------------------------------------------
refused() { # refused NAME EXPECTED ARGS...: the run fails naming EXPECTED and submits no job
    local name=$1 expected=$2 dir=$WORK/refused-$1 newest out
    shift 2
    newest=$(squeue -h -t all -o %i | sort -n | tail -n 1)
    out=$(on_slurm "$dir" "$@" 2>&1) && return 1
    grep -qF -- "$expected" <<<"$out" || { tail -n 20 <<<"$out"; return 1; }
    # no job newer than the newest before (finished jobs leave squeue after MinJobAge, new ones do not)
    [[ -z $(squeue -h -t all -o %i | awk -v newest="${newest:-0}" '$1 > newest') ]] &&
        ! grep -q "has been submitted" <<<"$out"
}
echo "resources: {sft: {gpus: 4, cpus: 1, mem_mb: 4000, runtime: 60}}" >"$WORK/four-gpus.yaml"
check "an SFT job asking for more GPUs than a node has is refused" \
    refused gpus "have at most $SLURM_TEST_GPUS GPU(s)" --configfile tests/configs/ci.yaml "$WORK/four-gpus.yaml"
check "squeue status queries with MinJobAge < 3x the first check's delay are refused" \
    refused minjobage "below 3 x slurm-init-seconds-before-status-checks" \
    --configfile tests/configs/ci.yaml --slurm-init-seconds-before-status-checks 200

echo "SLURM test: cluster up in ${t_up} s; CI experiment through SLURM ${t_slurm} s; local reference ${t_local} s;" \
    "total $SECONDS s"
echo "$passed passed, $failed failed"
((failed == 0))
