#!/usr/bin/env bash
# Pretraining on a SLURM cluster: srun starts one task per GPU, without torchrun; each process reads its
# rank, the world size and the first node's address from SLURM's environment.
#
#   tools/slurm_train.sh PARTITION JOB_NAME GPUS --config configs/pretrain/deit_small_mixpro.yaml --data-path /data/imagenet
#   GPUS_PER_NODE=4 CPUS_PER_TASK=10 SRUN_ARGS="--time=72:00:00 --account=myproj" tools/slurm_train.sh ...
#
# --batch-size is per GPU; the learning rate is scaled to the global batch (see the log).
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/slurm_launch.sh" "${1:?usage: tools/slurm_train.sh PARTITION JOB_NAME GPUS [pretrain options]}" \
    "${2:?job name}" "${3:?number of GPUs}" tools/train.py "${@:4}"
