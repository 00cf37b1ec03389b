"""Summary of benchmarks/h200_multi_gpu.sh: scaling efficiency per mode and the 1-GPU vs N-GPU
loss curves, side by side, with their largest difference.

    python benchmarks/compare_runs.py RESULTS_DIR N
"""
import json
import sys
from pathlib import Path


def main() -> None:
    results, gpus = Path(sys.argv[1]), int(sys.argv[2])
    summary = {"gpus": gpus, "scaling": {}, "curves": {}}
    for mode in ("eager", "compile"):
        one = json.loads((results / f"bench_1gpu_{mode}" / "benchmark.json").read_text())
        many = json.loads((results / f"bench_{gpus}gpu_{mode}" / "benchmark.json").read_text())
        efficiency = many["img_per_s"] / (gpus * one["img_per_s"])
        summary["scaling"][mode] = {"1gpu_img_per_s": one["img_per_s"], f"{gpus}gpu_img_per_s": many["img_per_s"],
                                    "efficiency": efficiency, "per_gpu_batch": one["batch_size"]}
        print(f"{mode:8s} 1 GPU {one['img_per_s']:8.0f} img/s   {gpus} GPUs {many['img_per_s']:8.0f} img/s   "
              f"efficiency {efficiency:.3f}")
    logs = {name: [json.loads(line) for line in (results / f"curve_{name}" / "log.jsonl").read_text().splitlines()]
            for name in ("1gpu", f"{gpus}gpu")}
    print(f"{'epoch':>5} {'train loss 1 GPU':>17} {f'{gpus} GPUs':>10} {'val loss 1 GPU':>15} {f'{gpus} GPUs':>10}")
    worst = 0.0
    for one, many in zip(logs["1gpu"], logs[f"{gpus}gpu"], strict=True):
        worst = max(worst, abs(one["train_loss"] - many["train_loss"]), abs(one["val_loss"] - many["val_loss"]))
        print(f"{one['epoch']:>5} {one['train_loss']:>17.5f} {many['train_loss']:>10.5f} {one['val_loss']:>15.5f} "
              f"{many['val_loss']:>10.5f}")
    summary["curves"] = {name: [{k: row[k] for k in ("epoch", "train_loss", "val_loss", "val_top1")} for row in rows]
                         for name, rows in logs.items()}
    summary["curves"]["max_abs_difference"] = worst
    print(f"largest loss difference: {worst:.2e}")
    (results / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
