"""Input pipeline alone: images per second out of the training loader (CPU path: timm's transforms in
the loader workers, collated; GPU path: decoded and augmented on the device), no model.

    PYTHONPATH=. python benchmarks/loader_rate.py --data-path DIR --data-pipeline gpu --out rate.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from pretrain.config import parse_args
from pretrain.distributed import DistInfo
from pretrain.data import reserve_hardware_queues
from pretrain.builder import build_data, build_model, open_datasets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-path", required=True)
    parser.add_argument("--data-pipeline", choices=("cpu", "gpu"), required=True)
    parser.add_argument("--config", default="configs/pretrain/deit_small_mixpro.yaml")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=10, help="batches before the clock starts")
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    config = parse_args(["--config", args.config, "--data-path", args.data_path, "--data-pipeline", args.data_pipeline,
                         "--batch-size", str(args.batch_size), "--workers", str(args.workers)])
    reserve_hardware_queues(args.data_pipeline)  # as tools/train.py does
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dist_info = DistInfo(rank=0, world_size=1, local_rank=0, device=device)
    datasets = open_datasets(config)  # first: it counts the classes the model needs
    data = build_data(config, build_model(config), dist_info, datasets)
    train_loader, pipeline = data.train_loader, data.pipeline
    seen, start = 0, 0.0
    for step, (images, _, _) in enumerate(train_loader):
        images = images.to(device, non_blocking=True)
        if step == args.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
        elif step > args.warmup:
            seen += images.shape[0]
        if step == args.warmup + args.batches:
            break
    if seen == 0:
        raise ValueError(f"the loader ran out before {args.warmup + args.batches + 1} batches: use a larger folder")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    result = {"data_pipeline": pipeline, "img_per_s": seen / (time.perf_counter() - start),
              "batch_size": args.batch_size, "workers": args.workers, "batches": args.batches,
              "auto_augment": config.auto_augment,
              "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}
    print(json.dumps(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
