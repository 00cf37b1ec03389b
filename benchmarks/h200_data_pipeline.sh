#!/usr/bin/env bash
# Input pipeline on one GPU box (issue 9), DeiT-S + MixPro at batch 256 in bf16:
#  1. each data pipeline alone (benchmarks/loader_rate.py): CPU path = timm's transforms in 16 loader
#     workers; GPU path = workers read bytes, nvjpeg decodes and the device augments;
#  2. training on synthetic images already on the GPU (tools/train.py --benchmark) in each mode:
#     eager, compiled (torch.compile's default mode) and graphs (compiled, --compile-mode reduce-overhead);
#  3. end-to-end training from a generated folder of JPEGs with each pipeline in each mode
#     (2 epochs of 24,576 images; the second epoch's img/s is reported).
#
#   benchmarks/h200_data_pipeline.sh [RESULTS_DIR]      (DATA=folder reuses or places the JPEGs;
#                                                        MODES="eager graphs", say, runs some of the modes)
set -euo pipefail
RESULTS="${1:-benchmarks/results/data_pipeline}"
DATA="${DATA:-/tmp/mixpro_jpegs}"
WORKERS="${WORKERS:-16}"
MODES="${MODES:-eager compile graphs}"
mkdir -p "$RESULTS"
source "$(dirname "$0")/environment.sh"
[[ -d "$DATA/train" ]] || "$PY" benchmarks/make_jpeg_folder.py "$DATA" --train 24576 --val 1024 --classes 1000

for pipeline in cpu gpu; do
    "$PY" benchmarks/loader_rate.py --data-path "$DATA" --data-pipeline "$pipeline" --workers "$WORKERS" \
        --out "$RESULTS/loader_$pipeline.json" 2>&1 | tail -1
done
COMMON=(--config configs/pretrain/deit_small_mixpro.yaml --batch-size 256)
for mode in $MODES; do
    case "$mode" in
        eager) FLAGS=() ;;
        compile) FLAGS=(--compile) ;;
        graphs) FLAGS=(--compile --compile-mode reduce-overhead) ;;
        *) echo "unknown mode $mode (eager, compile or graphs)" >&2; exit 2 ;;
    esac
    "$PY" tools/train.py "${COMMON[@]}" "${FLAGS[@]}" --benchmark --benchmark-steps 100 --benchmark-warmup 30 \
        --output-dir "$RESULTS/synthetic_$mode" 2>&1 | grep "benchmark:"
    for pipeline in cpu gpu; do
        "$PY" tools/train.py "${COMMON[@]}" "${FLAGS[@]}" --data-path "$DATA" --data-pipeline "$pipeline" \
            --workers "$WORKERS" --epochs 2 --save-every 0 --print-freq 32 \
            --output-dir "$RESULTS/train_${pipeline}_$mode" 2>&1 | grep "epoch 1:" | cut -c1-160
        rm -f "$RESULTS/train_${pipeline}_$mode"/checkpoint_*.pth
    done
done
"$PY" benchmarks/summarize_data_pipeline.py "$RESULTS" | tee "$RESULTS/summary.md"
