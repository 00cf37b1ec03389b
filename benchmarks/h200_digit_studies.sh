#!/usr/bin/env bash
# The digit studies of Tables 6 and 10 over several seeds on one GPU (docs/demo/digit_studies.md): the
# demo's digits (seed 0), then configs/studies/digits_table{6,10}.yaml with --device cuda. Copies each
# study's tables, curves and every run's log.jsonl to RESULTS_DIR.
#
#   [STUDIES="digits_table6 digits_table10"] benchmarks/h200_digit_studies.sh [RESULTS_DIR] [SEEDS]
set -uo pipefail
RESULTS="${1:-benchmarks/results/digit_studies}"
SEEDS="${2:-5}"
WORK="${STUDY_WORK:-/tmp/digit_studies}"
source "$(dirname "$0")/environment.sh"
"$PY" -c "from pathlib import Path; from demo import digits; print(digits.write_classification(Path('$WORK/digits'), 0))"
for name in ${STUDIES:-digits_table6 digits_table10}; do
    "$PY" tools/study.py "configs/studies/$name.yaml" --seeds "$SEEDS" --output "$WORK/$name" \
        --set data_path="$WORK/digits" device=cuda
    mkdir -p "$RESULTS/$name"
    cp "$WORK/$name"/study.* "$WORK/$name"/study_top1.png "$RESULTS/$name/"
    mkdir -p "$RESULTS/$name/logs"
    for run in "$WORK/$name"/*/seed_*; do  # SETTING/seed_N/log.jsonl -> logs/SETTING_seed_N.jsonl
        relative="${run#"$WORK/$name/"}"
        cp "$run/log.jsonl" "$RESULTS/$name/logs/${relative/\//_}.jsonl"
    done
done
