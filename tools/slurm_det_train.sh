#!/usr/bin/env bash
# Detection fine-tuning on a SLURM cluster through mmengine's slurm launcher (one task per GPU).
#
#   tools/slurm_det_train.sh PARTITION JOB_NAME GPUS CONFIG [--work-dir DIR] [--cfg-options ...]
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/slurm_launch.sh" "${1:?usage: tools/slurm_det_train.sh PARTITION JOB_NAME GPUS CONFIG [options]}" \
    "${2:?job name}" "${3:?number of GPUs}" tools/det_train.py "${4:?config}" --launcher slurm "${@:5}"
