"""Throughput of the robustness report's ImageNet-C pass (4.75 M images per model with the extras):
decode alone, inference alone and end to end, on a generated folder shaped like ImageNet-C.

The folder (a temporary one, removed at the end) is ROOT/<corruption>/<severity>/<wnid>/*.JPEG:
``--images`` JPEGs of 224 px, crops of the photos in docs/images with noise growing with the severity,
saved as ImageNet-C's were (PIL, quality 85, optimised), written for the first ``--written``
corruptions; the other corruption folders up to ``--corruptions`` hard-link those files (the same
bytes read again, as from the page cache). Measured, with progress printed line by line:

- decode: each data pipeline's loader alone over the written folders (gpu: workers read bytes, the
  device decodes with nvjpeg; cpu: PIL in the workers, batches copied to the device): img/s after the
  first batch, and the time to it; and how far nvjpeg's pixels are from PIL's on one batch (ImageNet-C
  is not resized, so nothing averages the decoders' differences away);
- inference: the model alone on batches already on the device, eager and (``--compile``) compiled;
- end to end: ``robustness.evaluate.evaluate_corruptions``, the report's own pass, on the pipeline the
  report would choose (``auto``): a warm-up pass (compilation, page cache), then a pass over the written
  folders and one over every folder; their difference gives the steady rate without the loader's
  start-up, which a pass over all of ImageNet-C pays once.

    PYTHONPATH=. python benchmarks/bench_corruptions.py [--device auto] [--images N] [--compile] [--out FILE.json]

Defaults follow the device: on CUDA DeiT-S, 40,000 JPEGs (4 written corruptions x 5 severities x 100
classes, linked into all 15: 150,000 images a pass), batch 256, 16 workers, bf16; on the CPU a check that
it runs (DeiT-Ti, 20 JPEGs, 2 written corruptions of 3, 1 class, batch 4, 1 worker, float32), whose
numbers say nothing about a GPU.
"""
import argparse
import json
import os
import platform
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import timm
import torch
import torchvision
from PIL import Image

from pretrain.data import choose_pipeline, create_loader, reserve_hardware_queues
from pretrain.distributed import DEVICE_HELP, resolve_device
from pretrain.errors import ConfigError, run_tool
from pretrain.inference import LoadedModel
from robustness.corruptions import CORRUPTIONS, EXTRA_CORRUPTIONS, SEVERITIES
from robustness.data import IMAGENET_C_SIZE, IMAGENET_WNIDS, corruption_transform, imagenet_c
from robustness.evaluate import Settings, classifier, evaluate_corruptions

PHOTOS = Path(__file__).resolve().parents[1] / "docs" / "images"
# (CUDA, CPU)
DEFAULTS = {"model": ("deit_small_patch16_224", "deit_tiny_patch16_224"), "images": (40000, 20), "written": (4, 2),
            "corruptions": (15, 3), "classes": (100, 1), "batch_size": (256, 4), "workers": (16, 1),
            "inference_batches": (50, 2)}
IMAGENET_C_IMAGES = {"15 corruptions": 50000 * 5 * len(CORRUPTIONS),
                     "with the 4 extras": 50000 * 5 * (len(CORRUPTIONS) + len(EXTRA_CORRUPTIONS))}


def _write_jpegs(job) -> int:
    """One process's share of the folder: ``job`` = (root, [(path, severity), ...], seed)."""
    root, items, seed = job
    rng = np.random.default_rng(seed)
    photos = [Image.open(path).convert("RGB") for path in sorted(PHOTOS.glob("*")) if path.suffix in (".jpg", ".png")]
    for relative, severity in items:
        photo = photos[rng.integers(len(photos))]
        side = int(min(photo.size) * rng.uniform(0.4, 1.0))
        left, top = rng.integers(0, photo.width - side + 1), rng.integers(0, photo.height - side + 1)
        crop = photo.crop((left, top, left + side, top + side)).resize((IMAGENET_C_SIZE, IMAGENET_C_SIZE),
                                                                       Image.Resampling.BICUBIC)
        pixels = np.asarray(crop, dtype=np.float32) + rng.normal(0, 4 * severity, (IMAGENET_C_SIZE, IMAGENET_C_SIZE, 3))
        path = Path(root) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=85, optimize=True)
    return len(items)


def make_corruption_folder(root: Path, images: int, written: int, corruptions: int, classes: int,
                           processes: int) -> Path:
    """``images`` JPEGs spread evenly over ``written`` corruptions x 5 severities x ``classes`` folders,
    hard-linked into the next corruptions up to ``corruptions``. Returns a second root holding links
    to the written corruption folders alone."""
    folders = [(c, s, w) for c in CORRUPTIONS[:written] for s in SEVERITIES for w in IMAGENET_WNIDS[:classes]]
    items = [(f"{c}/{s}/{w}/ILSVRC2012_val_{index:08d}.JPEG", s)
             for index, (c, s, w) in ((i, folders[i % len(folders)]) for i in range(images))]
    chunks = [items[start::processes] for start in range(processes) if items[start::processes]]
    done = 0
    with ProcessPoolExecutor(len(chunks)) as pool:
        futures = [pool.submit(_write_jpegs, (str(root), chunk, seed)) for seed, chunk in enumerate(chunks)]
        for future in as_completed(futures):
            done += future.result()
            print(f"  wrote {done}/{images} JPEGs", flush=True)
    for index, corruption in enumerate(CORRUPTIONS[written:corruptions]):
        source = root / CORRUPTIONS[index % written]
        for path in sorted(source.rglob("*.JPEG")):
            target = root / corruption / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target)
        print(f"  linked {corruption} to {source.name}'s files", flush=True)
    subset = root.parent / f"{root.name}_written"
    subset.mkdir()
    for corruption in CORRUPTIONS[:written]:
        (subset / corruption).symlink_to(root / corruption)
    return subset


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def decode_rate(corrupted, pipeline: str, device: torch.device, batch_size: int, workers: int) -> dict:
    """The loader alone: img/s from its first batch to its last, and the seconds to the first batch
    (worker start-up, the first reads)."""
    loader = create_loader(corrupted.dataset, pipeline, device, batch_size, workers)
    start, first, counted = time.perf_counter(), None, 0
    for images, _, _ in loader:
        images = images.to(device, non_blocking=True)
        if first is None:
            synchronize(device)
            first = time.perf_counter()
        else:
            counted += images.shape[0]
    synchronize(device)
    if counted == 0:
        raise ValueError(f"one batch of {batch_size} holds every image: use more --images or a smaller --batch-size")
    return {"img_per_s": counted / (time.perf_counter() - first), "first_batch_s": first - start}


def decoder_difference(corrupted, device: torch.device, batch_size: int) -> dict:
    """One batch through both pipelines: the share of channel values (0-255) more than two levels
    apart, and the largest difference."""
    first = {name: next(iter(create_loader(corrupted.dataset, name, device, batch_size, 0)))[0].to(device)
             for name in ("gpu", "cpu")}
    levels = (first["gpu"] - first["cpu"]).abs() * 255
    return {"values_over_2_levels": float((levels > 2.5).float().mean()), "max_levels": float(levels.max().round())}


def inference_rate(forward, device: torch.device, batch_size: int, batches: int) -> float:
    """img/s of the model on one batch of random [0, 1] images already on the device; three untimed
    batches first (compilation, allocator)."""
    images = torch.rand(batch_size, 3, IMAGENET_C_SIZE, IMAGENET_C_SIZE, device=device)
    with torch.no_grad():
        for _ in range(3):
            forward(images)
        synchronize(device)
        start = time.perf_counter()
        for _ in range(batches):
            forward(images)
        synchronize(device)
    return batch_size * batches / (time.perf_counter() - start)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)

    def default(key: str) -> str:
        cuda, cpu = DEFAULTS[key]
        return f"default: {cuda} on CUDA, {cpu} on the CPU"

    parser.add_argument("--images", type=int, default=None, help=f"generated JPEGs ({default('images')})")
    parser.add_argument("--written", type=int, default=None,
                        help=f"corruption folders the JPEGs are written for, each with 5 severities ({default('written')})")
    parser.add_argument("--corruptions", type=int, default=None,
                        help=f"corruption folders in all, those past --written hard-linking their files "
                             f"({default('corruptions')})")
    parser.add_argument("--classes", type=int, default=None, help=f"class folders per severity ({default('classes')})")
    parser.add_argument("--batch-size", type=int, default=None, help=default("batch_size"))
    parser.add_argument("--workers", type=int, default=None, help=f"loader workers ({default('workers')})")
    parser.add_argument("--inference-batches", type=int, default=None,
                        help=f"timed batches of the inference-alone measurement ({default('inference_batches')})")
    parser.add_argument("--model", default=None, help=f"timm model, random weights ({default('model')})")
    parser.add_argument("--pipelines", nargs="+", choices=("gpu", "cpu"), default=["gpu", "cpu"],
                        help="data pipelines whose decoding is measured alone (on a CPU device the gpu path decodes "
                             "with torchvision on the host)")
    parser.add_argument("--compile", action="store_true", help="also measure the compiled model, and run end to end "
                                                               "with it (as the report's --compile)")
    parser.add_argument("--processes", type=int, default=os.cpu_count(), help="processes writing the JPEGs")
    parser.add_argument("--out", default=None, help="JSON file to write (default: print only)")
    args = parser.parse_args(argv)
    for key in ("images", "written", "corruptions", "classes", "batch_size", "workers", "inference_batches",
                "processes"):
        value = getattr(args, key)
        if value is not None and value < (0 if key == "workers" else 1):
            parser.error(f"--{key.replace('_', '-')} must be >= {0 if key == 'workers' else 1}, got {value}")
    if args.corruptions is not None and args.corruptions > len(CORRUPTIONS):
        parser.error(f"--corruptions must be <= {len(CORRUPTIONS)}, got {args.corruptions}")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    reserve_hardware_queues("auto")  # before anything starts CUDA, as the report does
    device = resolve_device(args.device)
    for key, (cuda, cpu) in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, cuda if device.type == "cuda" else cpu)
    if not args.written < args.corruptions:
        raise ConfigError(f"--written ({args.written}) must be below --corruptions ({args.corruptions}): the steady "
                          f"rate is the difference of a pass over the written folders and one over all of them")
    amp = device.type == "cuda"
    loaded = LoadedModel.wrap(args.model, timm.create_model(args.model), device)
    pipeline = choose_pipeline("auto", device, [corruption_transform()])
    settings = Settings(batch_size=args.batch_size, workers=args.workers, amp=amp, show_progress=False,
                        data_pipeline=pipeline, compile=args.compile)
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
              "torch": torch.__version__, "torchvision": torchvision.__version__, "timm": timm.__version__,
              "model": args.model, "jpegs": args.images, "written_corruptions": args.written,
              "corruptions": args.corruptions, "classes": args.classes, "batch_size": args.batch_size,
              "workers": args.workers, "bf16": amp, "compile": args.compile, "decode": {}, "inference": {}}
    with tempfile.TemporaryDirectory(prefix="imagenet_c_") as tmp:
        root = Path(tmp) / "imagenet-c"
        print(f"writing {args.images} JPEGs ({args.written} corruptions x {len(SEVERITIES)} severities x {args.classes} "
              f"classes) under {root} with {args.processes} processes, linked into {args.corruptions} corruptions",
              flush=True)
        start = time.perf_counter()
        written = imagenet_c(make_corruption_folder(root, args.images, args.written, args.corruptions, args.classes,
                                                    args.processes))
        everything = imagenet_c(root)
        sizes = [path.stat().st_size for path in root.rglob("*.JPEG")]
        print(f"  {time.perf_counter() - start:.0f} s; {len(everything.dataset)} images in "
              f"{len(everything.groups)} corruption/severity folders, mean {np.mean(sizes) / 1024:.1f} KiB", flush=True)
        for name in args.pipelines:
            print(f"decode alone, {name} path, {args.workers} workers, batch {args.batch_size}, "
                  f"{len(written.dataset)} images", flush=True)
            result["decode"][name] = decode_rate(written, name, device, args.batch_size, args.workers)
            print(f"  {result['decode'][name]['img_per_s']:,.0f} img/s after the first batch "
                  f"({result['decode'][name]['first_batch_s']:.1f} s to it)", flush=True)
        print("nvjpeg's pixels against PIL's, one batch" if device.type == "cuda" else
              "the gpu path's decode (torchvision on the host) against PIL's, one batch", flush=True)
        result["decoder_difference"] = decoder_difference(written, device, args.batch_size)
        print(f"  {100 * result['decoder_difference']['values_over_2_levels']:.2f} % of channel values more than 2 "
              f"levels apart, at most {result['decoder_difference']['max_levels']:.0f}", flush=True)
        modes = [("eager", False)] + ([("compiled", True)] if args.compile else [])
        for mode, compiled in modes:
            print(f"inference alone, {mode}{' (compiling first)' if compiled else ''}, {args.inference_batches} batches "
                  f"of {args.batch_size}", flush=True)
            forward = classifier(loaded, Settings(batch_size=args.batch_size, amp=amp, compile=compiled)).logits
            result["inference"][mode] = inference_rate(forward, device, args.batch_size, args.inference_batches)
            print(f"  {result['inference'][mode]:,.0f} img/s", flush=True)
        predictor = classifier(loaded, settings)
        passes = {}
        for run, corrupted in (("warm-up", everything), ("written folders", written), ("every folder", everything)):
            print(f"end to end, {pipeline} path{', compiled' if args.compile else ''}: {run}, "
                  f"{len(corrupted.dataset)} images", flush=True)
            synchronize(device)
            start = time.perf_counter()
            evaluated = evaluate_corruptions(predictor, corrupted, settings)
            synchronize(device)
            passes[run] = (evaluated["images"], time.perf_counter() - start)
            print(f"  {passes[run][1]:.1f} s, {passes[run][0] / passes[run][1]:,.0f} img/s", flush=True)
    (small, small_s), (large, large_s) = passes["written folders"], passes["every folder"]
    steady = (large - small) / (large_s - small_s)
    result["end_to_end"] = {"pipeline": pipeline, "images": large, "seconds": large_s, "img_per_s": large / large_s,
                            "steady_img_per_s": steady, "startup_s": large_s - large / steady}
    result["imagenet_c_minutes_per_model"] = {what: count / steady / 60 for what, count in IMAGENET_C_IMAGES.items()}
    print(f"\n{args.model} on {result['device']}, batch {args.batch_size}, {args.workers} workers, "
          f"{'bf16' if amp else 'float32'}, {IMAGENET_C_SIZE}-px JPEGs")
    print(f"{'measurement':<52}{'img/s':>10}")
    for name, measured in result["decode"].items():
        print(f"{'decode alone, ' + name + ' path':<52}{measured['img_per_s']:>10,.0f}")
    for mode, measured in result["inference"].items():
        print(f"{'inference alone, ' + mode:<52}{measured:>10,.0f}")
    print(f"{f'end to end, {pipeline} path, one pass of {large} images':<52}{large / large_s:>10,.0f}")
    print(f"{f'end to end, {pipeline} path, steady (start-up left out)':<52}{steady:>10,.0f}")
    print(f"start-up of a pass {result['end_to_end']['startup_s']:.1f} s; ImageNet-C per model at the steady rate: "
          + ", ".join(f"{what} {minutes:.1f} min" for what, minutes in result["imagenet_c_minutes_per_model"].items()))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    run_tool(main)
