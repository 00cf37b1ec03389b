"""Augmented training samples from both data paths, side by side, for a person to compare.

Each row is one photo: the left half holds SAMPLES draws of the CPU path (timm's transform in the
loader workers), the right half SAMPLES draws of the GPU path (the same recipe decoded and augmented
on the device; its CPU fallback where there is no GPU). By default the draws are independent, so the
halves show the same distribution, not the same images; with --same-seed column k of both halves shares
one seed, hence the same parameters, and the pixels should match.

    python tools/visualize_augment.py --out augment_grid.png
    python tools/visualize_augment.py --config configs/pretrain/deit_small_mixpro.yaml --images a.jpg b.JPEG \
        --samples 6 --size 160 --same-seed --out grid.png
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from timm.utils import random_seed  # noqa: E402

from pretrain.config import parse_args as parse_pretrain_args  # noqa: E402
from pretrain.data import build_transforms  # noqa: E402
from pretrain.gpu_augment import DeviceAugment, plan_from_transform  # noqa: E402
from pretrain.main import build_model  # noqa: E402

PHOTOS = Path(__file__).resolve().parents[1] / "tests" / "data" / "real_images"
DEFAULT_IMAGES = [PHOTOS / name for name in ("china.jpg", "flower.jpg", "chelsea.png", "coffee.png")]


def to_tile(tensor: torch.Tensor, mean, std) -> Image.Image:
    pixels = tensor.cpu() * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)
    return Image.fromarray((pixels.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())


def main(argv: Optional[List[str]] = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/pretrain/deit_small_mixpro.yaml",
                        help="pretraining config whose augmentation is shown")
    parser.add_argument("--images", nargs="+", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--samples", type=int, default=6, help="draws per path and image")
    parser.add_argument("--size", type=int, default=160, help="crop size (the recipe's own is usually 224)")
    parser.add_argument("--same-seed", action="store_true", help="column k of both halves shares one seed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=Path("augment_grid.png"))
    args = parser.parse_args(argv)
    missing = [str(path) for path in args.images if not path.is_file()]
    if missing:
        parser.error(f"image(s) not found: {', '.join(missing)}")
    config = parse_pretrain_args(["--config", args.config, "--input-size", str(args.size)])
    cpu_transform, _ = build_transforms(config, build_model(config))
    plan = plan_from_transform(cpu_transform)
    augment = DeviceAugment(plan, torch.device(args.device))
    mean, std = plan.mean, plan.std

    gap, label = 8, 18
    width = (2 * args.samples) * args.size + gap
    grid = Image.new("RGB", (width, label + len(args.images) * args.size), "white")
    draw = ImageDraw.Draw(grid)
    draw.text((4, 3), "CPU path (timm in the loader workers)", fill="black")
    draw.text((args.samples * args.size + gap + 4, 3), "GPU path (decoded and augmented on the device)", fill="black")
    for row, path in enumerate(args.images):
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        pixels = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).to(args.device)
        for column in range(args.samples):
            random_seed(args.seed + 1000 * row + column)
            cpu = to_tile(cpu_transform(image), mean, std)
            random_seed(args.seed + 1000 * row + column + (0 if args.same_seed else 500))
            params = torch.as_tensor(plan.sample(image))[None]
            device = augment(pixels.reshape(-1), torch.tensor([[image.height, image.width]]), params)[0]
            top = label + row * args.size
            grid.paste(cpu, (column * args.size, top))
            grid.paste(to_tile(device, mean, std), ((args.samples + column) * args.size + gap, top))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.out)
    print(f"wrote {args.out} ({len(args.images)} images x {args.samples} draws per path)")
    return args.out


if __name__ == "__main__":
    main()
