#!/usr/bin/env bash
# Multi-GPU / multi-node pretraining through torchrun.
#
#   one node:   tools/dist_train.sh 8 --config configs/pretrain/deit_small_mixpro.yaml --data-path /data/imagenet
#   many nodes: NNODES=4 NODE_RANK=<0..3> MASTER_ADDR=<node 0 host> tools/dist_train.sh 8 --config ... --data-path ...
#
# --batch-size is per GPU; the learning rate is scaled to the global batch (see the log).
set -euo pipefail
GPUS="${1:?usage: tools/dist_train.sh GPUS_PER_NODE [pretrain options]}"
shift
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The suite's environment (make venv) unless PYTHON names another; torchrun is its torch.distributed.run.
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
if [ ! -x "$PYTHON" ]; then PYTHON=python; fi
if ! "$PYTHON" -c "import torch, timm" 2>/dev/null; then
    echo "error: $PYTHON cannot import torch and timm: run 'make venv' (or set PYTHON to an environment that has them)" >&2
    exit 2
fi
exec "$PYTHON" -m torch.distributed.run \
    --nnodes "${NNODES:-1}" --node_rank "${NODE_RANK:-0}" \
    --master_addr "${MASTER_ADDR:-127.0.0.1}" --master_port "${MASTER_PORT:-29500}" \
    --nproc_per_node "$GPUS" \
    "$ROOT/tools/train.py" "$@"
