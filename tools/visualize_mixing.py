"""Picture MaskMix, CutMix and the class attention on mixed images (the paper's Fig. 1, 4 and 6).

    python tools/visualize_mixing.py [--images docs/images] [--checkpoint deit_small_mixpro.pth] \
        [--mask-patch-size 64] [--seed 0] --out mixing.png

Without --checkpoint the attention comes from a random-weight model, and the picture's title says so.
"""
import argparse
from pathlib import Path

import timm
import torch

from pretrain.visualize import describe_model, load_images, mixing_figure
from pretrain.errors import run_tool
from pretrain.inference import LoadedModel, load_model

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--checkpoint", help="our export / training checkpoint, or TIMM_NAME=WEIGHTS")
    parser.add_argument("--model", default="deit_small_patch16_224", help="random-weight model without --checkpoint")
    parser.add_argument("--mask-patch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-images", type=int, default=6)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    cpu = torch.device("cpu")
    if args.checkpoint:
        loaded = load_model(args.checkpoint, cpu)
    else:
        loaded = LoadedModel.wrap(args.model, timm.create_model(args.model), cpu)
    images = load_images(args.images, size=loaded.input_size, limit=args.max_images)
    out = mixing_figure(images, loaded.model, loaded.mean, loaded.std, args.out, args.mask_patch_size, args.seed,
                        describe_model(args.checkpoint, args.model))
    print(f"wrote {out}")


if __name__ == "__main__":
    run_tool(main)
