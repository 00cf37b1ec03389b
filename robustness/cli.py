"""The report command: argument parsing, data checks, evaluation of every checkpoint, report."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Dict, List, Optional

import torch

from pretrain.distributed import cleanup, init_distributed

from . import data
from .evaluate import (Settings, evaluate_imagenet_a, evaluate_imagenet_o, evaluate_imagenet_val, load_model)
from .report import write_report


def parse_args(description: str, argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", action="append", required=True,
                        help="our export / training checkpoint, or TIMM_NAME=WEIGHTS_FILE; repeat to compare")
    parser.add_argument("--imagenet-val", help="ImageNet val folder (one folder per wnid)")
    parser.add_argument("--imagenet-a", help="ImageNet-A folder")
    parser.add_argument("--imagenet-o", help="ImageNet-O folder (its in-distribution set comes from --imagenet-val)")
    parser.add_argument("--dino", help="local DINO ViT-S/16 weights (vit_small_patch16_224.dino) for saliency; "
                                       "without them each model's own class attention is used")
    parser.add_argument("--out", required=True, help="report folder")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1, help="random-dropping repeats with fresh indices")
    parser.add_argument("--per-image", action="store_true",
                        help="draw random patches per image (the reference draws one set per batch)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda")
    return parser.parse_args(argv)


def check_roots(args: argparse.Namespace) -> None:
    for flag in ("imagenet_val", "imagenet_a", "imagenet_o"):
        root = getattr(args, flag)
        if root and not Path(root).is_dir():
            raise SystemExit(f"error: --{flag.replace('_', '-')} {root} does not exist")
    if args.imagenet_o and not args.imagenet_val:
        raise SystemExit("error: --imagenet-o needs --imagenet-val: its in-distribution images are ImageNet val "
                         "images of ImageNet-O's 200 classes")
    for spec in args.checkpoint:
        path = spec.partition("=")[2] or spec
        if not Path(path).is_file():
            raise SystemExit(f"error: checkpoint {path} does not exist")
    if args.dino and not Path(args.dino).is_file():
        raise SystemExit(f"error: --dino {args.dino} does not exist")


def main(description: str, argv: Optional[List[str]] = None) -> Dict:
    args = parse_args(description, argv)
    check_roots(args)
    dist_info = init_distributed(args.device)
    logging.basicConfig(level=logging.INFO if dist_info.is_main else logging.WARNING)
    try:
        sets = {}
        if args.imagenet_val:
            sets["imagenet_val"] = data.imagenet_val(args.imagenet_val)
        if args.imagenet_a:
            sets["imagenet_a"] = data.imagenet_a(args.imagenet_a)
        if args.imagenet_o:
            sets["imagenet_o"] = data.imagenet_o(args.imagenet_o)
            sets["imagenet_o_in"] = data.imagenet_o_in_distribution(args.imagenet_val)
        skipped = {name: f"no --{flag} given" for name, flag in
                   (("imagenet_val / occlusion", "imagenet-val"), ("imagenet_a", "imagenet-a"),
                    ("imagenet_o", "imagenet-o")) if not getattr(args, flag.replace("-", "_"))}
        device = dist_info.device
        settings = Settings(batch_size=args.batch_size, workers=args.workers, amp=device.type == "cuda",
                            seed=args.seed, repeats=args.repeats, per_image=args.per_image, rank=dist_info.rank,
                            world_size=dist_info.world_size, show_progress=dist_info.is_main)
        dino = load_model(f"vit_small_patch16_224.dino={args.dino}", device) if args.dino else None
        results: Dict[str, Dict] = {}
        for spec in args.checkpoint:
            model = load_model(spec, device)
            name = model.name if model.name not in results else f"{model.name} ({spec})"
            results[name] = {}
            if "imagenet_val" in sets:
                results[name]["imagenet_val"] = evaluate_imagenet_val(model, sets["imagenet_val"], settings, dino)
            if "imagenet_a" in sets:
                results[name]["imagenet_a"] = evaluate_imagenet_a(model, sets["imagenet_a"], settings)
            if "imagenet_o" in sets:
                results[name]["imagenet_o"] = evaluate_imagenet_o(model, sets["imagenet_o"], sets["imagenet_o_in"],
                                                                  settings)
            del model
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        notes = [f"checkpoints: {', '.join(args.checkpoint)}",
                 f"saliency: {'DINO ViT-S/16 head 1 from ' + args.dino if args.dino else 'each model’s own class attention (no --dino given)'}",
                 "calibration error: RMS over adaptive bins of 100 images, all bins including the last",
                 f"random dropping: {'per image' if args.per_image else 'one index set per batch (as the reference)'}, "
                 f"{args.repeats} repeat(s), seed {args.seed}"]
        if dist_info.is_main:
            files = write_report(results, skipped, Path(args.out), notes)
            print(f"wrote {', '.join(str(path) for path in files.values())}")
        return results
    finally:
        cleanup()
