#!/usr/bin/env bash
# srun one task per GPU of a tool of the suite (used by tools/slurm_*train.sh):
#   tools/slurm_launch.sh PARTITION JOB_NAME GPUS TOOL [tool options]
# GPUS_PER_NODE (8), CPUS_PER_TASK (8) and SRUN_ARGS (anything else srun takes) come from the environment;
# PYTHON defaults to the suite's .venv.
set -euo pipefail
PARTITION=$1 JOB_NAME=$2 GPUS=$3 TOOL=$4
shift 4
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
if [ ! -x "$PYTHON" ]; then PYTHON=python; fi
GPUS_PER_NODE=${GPUS_PER_NODE:-$(( GPUS < 8 ? GPUS : 8 ))}
# shellcheck disable=SC2086  # SRUN_ARGS holds several srun options
exec srun --partition="$PARTITION" --job-name="$JOB_NAME" --gres="gpu:$GPUS_PER_NODE" --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" --cpus-per-task="${CPUS_PER_TASK:-8}" --kill-on-bad-exit=1 ${SRUN_ARGS:-} \
    "$PYTHON" -u "$ROOT/$TOOL" "$@"
