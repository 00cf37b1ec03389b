#!/usr/bin/env bash
# Mixer step-time benchmark on one GPU: DeiT-S and PVT-S, batch 128 and 256, bf16, for none /
# Mixup-CutMix / TransMix (explicit attention) / MixPro. First a short run that fails on any
# host-device synchronisation inside the training step.
#
#   benchmarks/h200_mixer.sh eager|compile [RESULTS_DIR]
set -uo pipefail
MODE="${1:?eager or compile}"
RESULTS="${2:-benchmarks/results}"
mkdir -p "$RESULTS"
source "$(dirname "$0")/environment.sh"
FLAGS=()
[[ "$MODE" == compile ]] && FLAGS+=(--compile)
if [[ "$MODE" == eager ]]; then
    "$PY" benchmarks/bench_mixer.py --batch-size 64 --steps 5 --warmup 3 --repeats 1 --sync-debug \
        && echo "sync check: no host-device synchronisation in any policy's step" || echo "sync check FAILED"
fi
for model in deit_small_patch16_224 pvt_small; do
    for batch in 128 256; do
        "$PY" benchmarks/bench_mixer.py --model "$model" --batch-size "$batch" "${FLAGS[@]}" \
            --out "$RESULTS/mixer_${model}_b${batch}_${MODE}.json" 2>&1 | grep -v Warning
    done
done
