"""Table of benchmarks/h200_data_pipeline.sh's runs: input pipeline alone, synthetic-data training and
end-to-end training from JPEGs per data pipeline, in each mode run (eager, compiled, compiled with CUDA
graphs); writes RESULTS/summary.json.

    python benchmarks/summarize_data_pipeline.py RESULTS
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from pretrain.plots import read_log

MODES = {"eager": "eager", "compile": "compiled", "graphs": "compiled, CUDA graphs"}


def last_epoch_rate(folder: Path) -> float:
    """The last epoch's rate after its first print window: the first epoch holds compilation, and every
    epoch's first steps wait for the loader workers to start (negligible in an ImageNet epoch of 5,000
    steps, not in the 96 steps of the benchmark folder). Logs from before that rate was kept give the
    whole epoch's."""
    last = read_log(folder / "log.jsonl")[-1]
    return last.get("train_img_per_s_steady") or last["train_img_per_s"]


def main(results: Path) -> dict:
    summary = {"loader_only": {}, "training": {}}
    for pipeline in ("cpu", "gpu"):
        path = results / f"loader_{pipeline}.json"
        if path.is_file():
            summary["loader_only"][pipeline] = json.loads(path.read_text())["img_per_s"]
    lines = ["| mode | synthetic data | CPU path (timm in 16 workers) | GPU path (nvjpeg + device ops) "
             "| GPU path / synthetic |",
             "|---|---|---|---|---|"]
    for mode, title in MODES.items():
        row = {}
        synthetic = results / f"synthetic_{mode}" / "benchmark.json"
        if synthetic.is_file():
            row["synthetic"] = json.loads(synthetic.read_text())["img_per_s"]
        for pipeline in ("cpu", "gpu"):
            folder = results / f"train_{pipeline}_{mode}"
            if (folder / "log.jsonl").is_file():
                row[pipeline] = last_epoch_rate(folder)
        if "synthetic" in row and "gpu" in row:
            row["gpu_over_synthetic"] = row["gpu"] / row["synthetic"]
        if not row:
            continue
        summary["training"][mode] = row
        cells = [f"{row[key]:,.0f}" if key in row else "-" for key in ("synthetic", "cpu", "gpu")]
        ratio = f"{row['gpu_over_synthetic']:.0%}" if "gpu_over_synthetic" in row else "-"
        lines.append(f"| {title} | " + " | ".join(cells) + f" | {ratio} |")
    loaders = ", ".join(f"{name} {rate:,.0f} img/s" for name, rate in summary["loader_only"].items())
    lines.append("\ntraining: the last epoch after its first print window (whole epochs in older logs)")
    lines.append(f"input pipeline alone (no model): {loaders or '-'}")
    (results / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("\n".join(lines))
    return summary


if __name__ == "__main__":
    main(Path(sys.argv[1]))
