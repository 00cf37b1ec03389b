"""Where the GPU data path spends its time, per batch: the loader workers alone (read bytes, draw
parameters, hand over), nvjpeg decoding into one packed buffer, resampling, the whole augmentation
(resampling included), and the whole device stage, each as wall time and as the calling thread's CPU
time; plus the device kernels of the whole stage (torch.profiler).

    PYTHONPATH=. python benchmarks/profile_gpu_data.py --data-path DIR --out profile.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from pretrain.config import parse_args
from pretrain.data.gpu.resample import resample_boxes
from pretrain.data.gpu.decode import DeviceDecoder, EncodedImageDataset, collate_encoded
from pretrain.builder import build_datasets, build_model, open_datasets


def timed(fn, device, host_cpu: list):
    """fn's result and wall milliseconds to its device work's end; appends the calling thread's CPU
    milliseconds in fn (launches, Python, library host work: what competes with training for the GIL
    and cores) to ``host_cpu``."""
    torch.cuda.synchronize(device)
    start, cpu = time.perf_counter(), time.thread_time()
    result = fn()
    host_cpu.append(1000 * (time.thread_time() - cpu))
    torch.cuda.synchronize(device)
    return result, 1000 * (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-path", required=True)
    parser.add_argument("--config", default="configs/pretrain/deit_small_mixpro.yaml")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    device = torch.device("cuda")
    config = parse_args(["--config", args.config, "--data-path", args.data_path])
    datasets = open_datasets(config)  # first: it counts the classes the model needs
    train, _ = build_datasets(config, build_model(config), datasets)
    dataset = EncodedImageDataset.from_dataset(train)
    result = {"batch_size": args.batch_size, "workers": args.workers}

    start = time.perf_counter()
    for index in range(200):
        dataset[index]
    result["worker_ms_per_image"] = 1000 * (time.perf_counter() - start) / 200

    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=args.workers, shuffle=True,
                        collate_fn=collate_encoded, pin_memory=True, drop_last=True)
    batches, start = [], 0.0
    for step, batch in enumerate(loader):
        if step == 2:
            start = time.perf_counter()
        batches.append(batch)
        if len(batches) == args.batches + 2:
            break
    result["loader_alone_img_per_s"] = args.batches * args.batch_size / (time.perf_counter() - start)

    decoder = DeviceDecoder(dataset.plan, device)
    result["jpeg_decoder"] = decoder.describe()
    decoder(batches[0])  # warm-up: nvjpeg handles, Triton compilation
    stages = {"decode_packed": [], "resample": [], "augment": [], "device_stage_total": []}
    host_cpu = {name: [] for name in stages}
    for batch in batches[2:]:
        decoded, ms = timed(lambda: decoder.decode_packed(batch), device, host_cpu["decode_packed"])
        flat = decoded.pixels
        stages["decode_packed"].append(ms)
        plan = dataset.plan
        _, ms = timed(lambda: resample_boxes(flat, batch.sizes, batch.params[:, 0:4], batch.params[:, 4:8], plan.size,
                                             plan.interpolation), device, host_cpu["resample"])
        stages["resample"].append(ms)
        _, ms = timed(lambda: decoder.augment(flat, batch.sizes, batch.params), device, host_cpu["augment"])
        stages["augment"].append(ms)
        _, ms = timed(lambda: decoder(batch), device, host_cpu["device_stage_total"])
        stages["device_stage_total"].append(ms)
    result["median_ms"] = {name: statistics.median(values) for name, values in stages.items()}
    result["median_host_cpu_ms"] = {name: statistics.median(values) for name, values in host_cpu.items()}
    result["device_stage_img_per_s"] = args.batch_size / result["median_ms"]["device_stage_total"] * 1000

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profiler:
        for batch in batches[2:5]:
            decoder(batch)
        torch.cuda.synchronize(device)
    events = [e for e in profiler.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
    events.sort(key=lambda e: e.device_time_total, reverse=True)
    result["kernels_per_batch"] = sum(e.count for e in events) / 3
    result["device_ms_per_batch"] = sum(e.device_time_total for e in events) / 3 / 1000
    result["top_kernels_ms_per_batch"] = {e.key[:90]: round(e.device_time_total / 3 / 1000, 3) for e in events[:12]}
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
