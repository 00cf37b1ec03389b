"""Augmented training samples from both data paths, side by side, for a person to compare.

Each row is one photo: the left half holds SAMPLES draws of the CPU path (timm's transform in the
loader workers), the right half SAMPLES draws of the GPU path's augmentation (the same recipe, on
--device: the GPU, or the path's CPU fallback with --device cpu or where there is no GPU; the half's
title names the device used). Both halves decode with PIL. By default the draws are independent, so the
halves show the same distribution, not the same images; with --same-seed column k of both halves shares
one seed, hence the same parameters, and the pixels should match.

    python tools/visualize_augment.py --out augment_grid.png
    python tools/visualize_augment.py --config configs/pretrain/deit_small_mixpro.yaml --images a.jpg b.JPEG \
        --samples 6 --size 160 --same-seed --out grid.png
"""
import argparse
from pathlib import Path
from typing import List, Optional

from pretrain.builder import build_model
from pretrain.config import parse_args as parse_pretrain_args
from pretrain.data import build_transforms
from pretrain.distributed import DEVICE_HELP, resolve_device
from pretrain.errors import run_tool
from pretrain.visualize import augment_grid

PHOTOS = Path(__file__).resolve().parents[1] / "docs" / "images"
DEFAULT_IMAGES = [PHOTOS / name for name in ("china.jpg", "flower.jpg", "chelsea.png", "coffee.png")]


def main(argv: Optional[List[str]] = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/pretrain/deit_small_mixpro.yaml",
                        help="pretraining config whose augmentation is shown")
    parser.add_argument("--images", nargs="+", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--samples", type=int, default=6, help="draws per path and image")
    parser.add_argument("--size", type=int, default=160, help="crop size (the recipe's own is usually 224)")
    parser.add_argument("--same-seed", action="store_true", help="column k of both halves shares one seed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help=f"where the GPU path augments: {DEVICE_HELP}")
    parser.add_argument("--out", type=Path, default=Path("augment_grid.png"))
    args = parser.parse_args(argv)
    missing = [str(path) for path in args.images if not path.is_file()]
    if missing:
        parser.error(f"image(s) not found: {', '.join(missing)}")
    device = resolve_device(args.device)
    config = parse_pretrain_args(["--config", args.config, "--input-size", str(args.size)])
    cpu_transform, _ = build_transforms(config, build_model(config))
    grid = augment_grid(args.images, cpu_transform, args.size, args.samples, device, args.seed, args.same_seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.out)
    print(f"wrote {args.out} ({len(args.images)} images x {args.samples} draws per path)")
    return args.out


if __name__ == "__main__":
    run_tool(main)
