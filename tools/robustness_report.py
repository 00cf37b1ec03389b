"""Compare checkpoints on occlusion, ImageNet-A / -O / -R / -Sketch / -V2 / -C, and write a report.

    python tools/robustness_report.py --checkpoint deit_small_baseline.pth --checkpoint deit_small_mixpro.pth \
        --imagenet-val /data/imagenet/val --imagenet-a /data/imagenet-a --imagenet-o /data/imagenet-o \
        --imagenet-r /data/imagenet-r --imagenet-sketch /data/imagenet-sketch \
        --imagenet-v2 /data/imagenetv2-matched-frequency-format-val --imagenet-c /data/imagenet-c --out report/
    torchrun --nproc_per_node 8 tools/robustness_report.py ...        (each process evaluates a shard)

--checkpoint takes our exports or training checkpoints, or TIMM_NAME=WEIGHTS for a timm model with
local weights. Benchmarks whose data is not given are skipped and marked so in the report.
Writes OUT/report.md, report.json, table5.csv, occlusion.csv, shifts.csv, imagenet_c_errors.csv,
imagenet_c_ce.csv and PNG plots.
"""
from pretrain.errors import run_tool
from robustness.cli import main

if __name__ == "__main__":
    run_tool(main, __doc__)
