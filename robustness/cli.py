"""The report command: argument parsing, data checks, evaluation of every checkpoint, report."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Dict, List, Optional

import torch

from pretrain.checkpoint import load_model
from pretrain.data import choose_pipeline, reserve_hardware_queues
from pretrain.distributed import cleanup, init_distributed

from . import data
from .evaluate import Settings, evaluate_ood, evaluate_shifted, evaluate_val
from .report import IMAGENET_TITLES, write_report

# Benchmark key -> (command-line flags, what is measured on it).
BENCHMARKS = {"val": ("--val / --imagenet-val", "clean top-1 and occlusion"),
              "shifted": ("--shifted / --imagenet-a", "accuracy, calibration error, AURRA"),
              "ood": ("--ood / --imagenet-o", "OOD detection")}


def parse_args(description: str, argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", action="append", required=True,
                        help="our export / training checkpoint, or TIMM_NAME=WEIGHTS_FILE; repeat to compare")
    parser.add_argument("--val", "--imagenet-val", dest="val",
                        help="validation folder, one folder per class (ImageNet val: one per wnid)")
    parser.add_argument("--shifted", "--imagenet-a", dest="shifted", help="shifted set folder (ImageNet-A)")
    parser.add_argument("--ood", "--imagenet-o", dest="ood",
                        help="OOD folder (ImageNet-O); its in-distribution images come from --val")
    parser.add_argument("--classes", help="file of the models' class folder names, one per line in logit order, "
                                          "for a label space other than ImageNet-1k (the shifted and in-distribution "
                                          "sets then use all of them)")
    parser.add_argument("--names", nargs=3, metavar=("VAL", "SHIFTED", "OOD"),
                        help="names of the three sets in the report (default: ImageNet val, IN-A, IN-O)")
    parser.add_argument("--crop-pct", type=float, default=0.875,
                        help="evaluation resize = model input size / crop_pct, then centre crop (256 -> 224)")
    parser.add_argument("--dino", help="local DINO ViT-S/16 weights (vit_small_patch16_224.dino) for saliency; "
                                       "without them each model's own class attention is used")
    parser.add_argument("--out", required=True, help="report folder")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1, help="random-dropping repeats with fresh indices")
    parser.add_argument("--per-image", action="store_true",
                        help="draw random patches per image (the reference draws one set per batch)")
    parser.add_argument("--random-patch-size", type=int, default=16,
                        help="side in px of the patches of random dropping (16: the reference's 196 at 224 px); "
                             "salient / non-salient dropping uses the saliency map's cells")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--data-pipeline", choices=("auto", "cpu", "gpu"), default="auto",
                        help="gpu: workers read bytes, the GPU decodes (nvjpeg) and resizes batches; "
                             "auto: gpu on a CUDA device whose torchvision has nvjpeg")
    args = parser.parse_args(argv)
    if not 0.0 < args.crop_pct <= 1.0:
        parser.error(f"--crop-pct must be in (0, 1], got {args.crop_pct}")
    return args


def check_inputs(args: argparse.Namespace) -> None:
    for key, (flags, _) in BENCHMARKS.items():
        root = getattr(args, key)
        if root and not Path(root).is_dir():
            raise SystemExit(f"error: {flags.split()[0]} {root} does not exist")
    if args.ood and not args.val:
        raise SystemExit("error: --ood needs --val: the in-distribution images of the OOD benchmark are the val "
                         "images of its classes (for ImageNet-O, ImageNet val images of its 200 classes)")
    for spec in args.checkpoint:
        path = spec.partition("=")[2] or spec
        if not Path(path).is_file():
            raise SystemExit(f"error: checkpoint {path} does not exist")
    if args.dino and not Path(args.dino).is_file():
        raise SystemExit(f"error: --dino {args.dino} does not exist")
    if args.classes and not Path(args.classes).is_file():
        raise SystemExit(f"error: --classes {args.classes} does not exist")


def check_model(model, spec: str, space: data.LabelSpace, classes_file: Optional[str], dino) -> None:
    """The model must predict the label space's classes, and DINO saliency needs 224-px inputs."""
    outputs = getattr(model.model, "num_classes", None)
    if outputs != len(space.classes):
        where = f"--classes {classes_file}" if classes_file else "ImageNet-1k (no --classes given)"
        raise SystemExit(f"error: {spec} predicts {outputs} classes but the label space, {where}, has "
                         f"{len(space.classes)}")
    if dino is not None and model.input_size != dino.input_size:
        raise SystemExit(f"error: --dino saliency is computed at {dino.input_size} px, {spec} takes "
                         f"{model.input_size}-px images: leave out --dino to use its own attention")


def build_sets(args: argparse.Namespace, space: data.LabelSpace, titles: Dict[str, str]) -> Dict[str, data.EvalSet]:
    sets = {}
    if args.val:
        sets["val"] = data.val_set(args.val, space, what=titles["val"])
    if args.shifted:
        sets["shifted"] = data.shifted_set(args.shifted, space, what=titles["shifted"])
    if args.ood:
        sets["ood"] = data.ood_set(args.ood, space, what=titles["ood"])
        sets["ood_in"] = data.ood_in_distribution(args.val, space, what=titles["val"])
    return sets


def main(description: str, argv: Optional[List[str]] = None) -> Dict:
    args = parse_args(description, argv)
    check_inputs(args)
    titles = dict(zip(BENCHMARKS, args.names)) if args.names else dict(IMAGENET_TITLES)
    reserve_hardware_queues(args.data_pipeline)
    dist_info = init_distributed(args.device)
    logging.basicConfig(level=logging.INFO if dist_info.is_main else logging.WARNING)
    try:
        space = data.read_class_list(args.classes) if args.classes else data.IMAGENET
        sets = build_sets(args, space, titles)
        skipped = {key: f"{what}; no {flags} given" for key, (flags, what) in BENCHMARKS.items()
                   if not getattr(args, key)}
        device = dist_info.device
        settings = Settings(batch_size=args.batch_size, workers=args.workers, amp=device.type == "cuda",
                            seed=args.seed, repeats=args.repeats, per_image=args.per_image,
                            random_patch_size=args.random_patch_size, rank=dist_info.rank,
                            world_size=dist_info.world_size, show_progress=dist_info.is_main,
                            data_pipeline=choose_pipeline(args.data_pipeline, device))
        dino = load_model(f"vit_small_patch16_224.dino={args.dino}", device) if args.dino else None
        results: Dict[str, Dict] = {}
        for spec in args.checkpoint:
            model = load_model(spec, device)
            check_model(model, spec, space, args.classes, dino)
            for evalset in sets.values():
                evalset.dataset.transform = data.eval_transform(int(round(model.input_size / args.crop_pct)),
                                                                model.input_size)
            name = model.name if model.name not in results else f"{model.name} ({spec})"
            results[name] = {}
            if "val" in sets:
                results[name]["val"] = evaluate_val(model, sets["val"], settings, dino)
            if "shifted" in sets:
                results[name]["shifted"] = evaluate_shifted(model, sets["shifted"], settings)
            if "ood" in sets:
                results[name]["ood"] = evaluate_ood(model, sets["ood"], sets["ood_in"], settings)
            del model
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        notes = [f"checkpoints: {', '.join(args.checkpoint)}",
                 f"label space: {args.classes or 'ImageNet-1k'}; evaluation resize input / {args.crop_pct}, "
                 f"centre crop to each model's input size",
                 f"saliency: {'DINO ViT-S/16 head 1 from ' + args.dino if args.dino else 'each model’s own class attention (no --dino given)'}",
                 "calibration error: RMS over adaptive bins of 100 images, all bins including the last",
                 f"random dropping: {'per image' if args.per_image else 'one index set per batch (as the reference)'}, "
                 f"{args.repeats} repeat(s), seed {args.seed}"]
        if dist_info.is_main:
            files = write_report(results, skipped, Path(args.out), notes, titles)
            print(f"wrote {', '.join(str(path) for path in files.values())}")
        return results
    finally:
        cleanup()
