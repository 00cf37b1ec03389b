#!/usr/bin/env bash
# Multi-GPU scaling of pretraining on one host (issue 8):
#  1. DeiT-S + MixPro throughput (tools/train.py --benchmark, synthetic images on each GPU) on 1 and
#     N GPUs at the same per-GPU batch, eager and compiled; scaling efficiency = N-GPU / (N x 1-GPU).
#  2. Loss curves at a fixed global batch on 1 GPU (batch 64) and N GPUs (64 / N each), on a generated
#     image folder, without random augmentation, mixing or drop path (every rank would draw its own),
#     so the N-GPU run must reproduce the 1-GPU curve up to bf16 and reduction-order rounding.
#
#   benchmarks/h200_multi_gpu.sh N [RESULTS_DIR]
set -euo pipefail
GPUS="${1:?number of GPUs}"
RESULTS="${2:-benchmarks/results/multi_gpu}"
mkdir -p "$RESULTS"
source "$(dirname "$0")/environment.sh"

BENCH=(--config configs/pretrain/deit_small_mixpro.yaml --benchmark --batch-size 256 --benchmark-steps 100
       --benchmark-warmup 30)
for mode in eager compile; do
    FLAGS=()
    [[ "$mode" == compile ]] && FLAGS+=(--compile)
    "$PY" tools/train.py "${BENCH[@]}" "${FLAGS[@]}" --output-dir "$RESULTS/bench_1gpu_$mode" 2>&1 | grep "benchmark:"
    torchrun --standalone --nproc_per_node "$GPUS" tools/train.py "${BENCH[@]}" "${FLAGS[@]}" \
        --output-dir "$RESULTS/bench_${GPUS}gpu_$mode" 2>&1 | grep "benchmark:"
done

"$PY" -c "import sys; sys.path.insert(0, 'tests'); from imagefolder import make_image_folder; \
make_image_folder('$RESULTS/images', per_class_train=128, per_class_val=32, size=64)"
CURVE=(--config configs/pretrain/deit_small_baseline.yaml --data-path "$RESULTS/images" --num-classes 4
       --no-aug --mix-prob 0 --drop-path 0 --epochs 6 --warmup-epochs 1 --workers 4 --save-every 0)
"$PY" tools/train.py "${CURVE[@]}" --batch-size 64 --output-dir "$RESULTS/curve_1gpu" > /dev/null 2>&1
torchrun --standalone --nproc_per_node "$GPUS" tools/train.py "${CURVE[@]}" --batch-size $((64 / GPUS)) \
    --output-dir "$RESULTS/curve_${GPUS}gpu" > /dev/null 2>&1
"$PY" benchmarks/compare_runs.py "$RESULTS" "$GPUS" | tee "$RESULTS/summary.txt"
