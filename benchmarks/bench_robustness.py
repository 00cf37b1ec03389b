"""Throughput of the occlusion sweep: every level from one decode of each batch, against one pass
over the data per level (what a loop over levels around an ordinary evaluation would do).

Generates a folder of JPEGs (ImageNet val layout, 500x375 like a typical ImageNet photo), then times
both ways with real JPEG decoding in the loader workers and prints a table; writes JSON.

    python benchmarks/bench_robustness.py [--device auto] [--images 2000] [--workers 12] [--out FILE.json]

Defaults follow the device: on CUDA the published setting (DeiT-S, 2000 images, batch 128, 12 workers,
bf16; about a minute on an H200); on the CPU a check that it runs (DeiT-Ti, 8 images, batch 4, 1 worker,
float32; about 35 s on 2 cores), whose numbers say nothing about a GPU.
"""
import argparse
import json
from dataclasses import replace
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image
from tqdm import tqdm

from pretrain.distributed import DEVICE_HELP, resolve_device
from pretrain.errors import run_tool
from pretrain.inference import LoadedModel
from robustness.data import IMAGENET_WNIDS, imagenet_val
from robustness.evaluate import Settings, evaluate_val
from robustness.occlusion import RANDOM_LEVELS, SALIENCY_LEVELS

# (CUDA, CPU): every occluded variant is a forward pass, 30 per image, which a CPU does slowly.
DEFAULTS = {"model": ("deit_small_patch16_224", "deit_tiny_patch16_224"), "images": (2000, 8),
            "batch_size": (128, 4), "workers": (12, 1)}


def make_jpegs(root: Path, count: int, classes: int = 50) -> Path:
    """Smooth random colour fields plus noise: decode cost like photos, not like flat images."""
    rng = np.random.default_rng(0)
    for index in range(count):
        folder = root / IMAGENET_WNIDS[index % classes]
        folder.mkdir(parents=True, exist_ok=True)
        low = rng.uniform(0, 255, (6, 8, 3)).astype(np.uint8)
        image = np.asarray(Image.fromarray(low).resize((500, 375), Image.BICUBIC), dtype=np.float32)
        image += rng.normal(0, 12, image.shape)
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / f"img_{index:06d}.JPEG", quality=90)
    return root


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)

    def default(key: str) -> str:
        cuda, cpu = DEFAULTS[key]
        return f"default: {cuda} on CUDA, {cpu} on the CPU"

    parser.add_argument("--images", type=int, default=None, help=f"generated JPEGs ({default('images')})")
    parser.add_argument("--batch-size", type=int, default=None, help=default("batch_size"))
    parser.add_argument("--workers", type=int, default=None, help=f"loader workers ({default('workers')})")
    parser.add_argument("--model", default=None, help=f"timm model, random weights ({default('model')})")
    parser.add_argument("--out", default=None, help="JSON file to write (default: print only)")
    args = parser.parse_args(argv)
    args.device = resolve_device(args.device)
    for key, (cuda, cpu) in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, cuda if args.device.type == "cuda" else cpu)
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = args.device
    loaded = LoadedModel.wrap(args.model, timm.create_model(args.model), device)
    settings = Settings(batch_size=args.batch_size, workers=args.workers, amp=device.type == "cuda",
                        show_progress=False)
    passes = len(RANDOM_LEVELS) + len(SALIENCY_LEVELS)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"writing {args.images} JPEGs", flush=True)
        evalset = imagenet_val(make_jpegs(Path(tmp), args.images))
        print("warm-up pass (caches, kernels; untimed), then the timed one pass", flush=True)
        evaluate_val(loaded, evalset, replace(settings, show_progress=True))
        one_pass = timed(lambda: evaluate_val(loaded, evalset, replace(settings, show_progress=True)), device)

        def per_level():
            with tqdm(total=passes, desc="one pass per level", unit="pass") as progress:
                for k in RANDOM_LEVELS:
                    evaluate_val(loaded, evalset, replace(settings, random_levels=(k,), saliency_levels=()))
                    progress.update()
                for lam in SALIENCY_LEVELS:
                    evaluate_val(loaded, evalset, replace(settings, random_levels=(), saliency_levels=(lam,)))
                    progress.update()

        separate = timed(per_level, device)
    variants = len(RANDOM_LEVELS) + 2 * len(SALIENCY_LEVELS)
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "timm": timm.__version__, "model": args.model, "images": args.images,
        "batch_size": args.batch_size, "workers": args.workers, "variants_per_image": variants,
        "one_pass_s": one_pass, "one_pass_per_level_s": separate, "passes_per_level_mode": passes,
        "one_pass_img_per_s": args.images / one_pass, "per_level_img_per_s": args.images * passes / separate,
        "speedup": separate / one_pass,
    }
    print(f"{args.model}, {args.images} JPEGs, {variants} occluded variants per image, {args.workers} workers")
    print(f"{'way':<22}{'seconds':>10}{'decoded img/s':>15}")
    print(f"{'one pass':<22}{one_pass:>10.1f}{report['one_pass_img_per_s']:>15.0f}")
    print(f"{'one pass per level':<22}{separate:>10.1f}{report['per_level_img_per_s']:>15.0f}")
    print(f"speed-up of one pass: {report['speedup']:.2f}x ({passes} passes replaced by 1)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    run_tool(main)
