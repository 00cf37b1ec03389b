"""Throughput of the occlusion sweep: every level from one decode of each batch, against one pass
over the data per level (what a loop over levels around an ordinary evaluation would do).

Generates a folder of JPEGs (ImageNet val layout, 500x375 like a typical ImageNet photo), then times
both ways with real JPEG decoding in the loader workers and prints a table; writes JSON.

    python benchmarks/bench_robustness.py [--images 2000] [--workers 12] [--out benchmarks/results/robustness.json]
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

from pretrain.checkpoint import LoadedModel
from robustness.data import IMAGENET_WNIDS, imagenet_val
from robustness.evaluate import Settings, evaluate_val
from robustness.occlusion import RANDOM_LEVELS, SALIENCY_LEVELS


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


def timed(fn) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=12)
    parser.add_argument("--model", default="deit_small_patch16_224")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    loaded = LoadedModel.wrap(args.model, timm.create_model(args.model), device)
    settings = Settings(batch_size=args.batch_size, workers=args.workers, amp=device.type == "cuda",
                        show_progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        evalset = imagenet_val(make_jpegs(Path(tmp), args.images))
        evaluate_val(loaded, evalset, settings)  # warm-up: caches, kernels
        one_pass = timed(lambda: evaluate_val(loaded, evalset, settings))

        def per_level():
            for k in RANDOM_LEVELS:
                evaluate_val(loaded, evalset, replace(settings, random_levels=(k,), saliency_levels=()))
            for lam in SALIENCY_LEVELS:
                evaluate_val(loaded, evalset, replace(settings, random_levels=(), saliency_levels=(lam,)))

        separate = timed(per_level)
    passes = len(RANDOM_LEVELS) + len(SALIENCY_LEVELS)
    variants = len(RANDOM_LEVELS) + 2 * len(SALIENCY_LEVELS)
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
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


if __name__ == "__main__":
    main()
