"""The report command: argument parsing, data checks, evaluation of every checkpoint, report."""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Dict, List, Optional

import torch

from pretrain.data import choose_pipeline, reserve_hardware_queues
from pretrain.data.transforms import eval_transform
from pretrain.distributed import DEVICE_HELP, cleanup, init_distributed
from pretrain.errors import ConfigError, InputNotFoundError, UserError
from pretrain.inference import REFERENCE_EVAL, eval_resize, load_model, read_model_spec

from . import data
from .corruptions import ALEXNET_SOURCE
from .evaluate import (Settings, classifier, evaluate_corruptions, evaluate_ood, evaluate_shifted, evaluate_top1,
                       evaluate_val)
from .metrics import CALIBRATION_PROTOCOLS, FPR_DEFINITIONS
from .report import IMAGENET_TITLES, write_report

# Benchmark key -> (command-line flags, what is measured on it).
BENCHMARKS = {"val": ("--val / --imagenet-val", "clean top-1 and occlusion"),
              "shifted": ("--shifted / --imagenet-a", "accuracy, calibration error, AURRA"),
              "ood": ("--ood / --imagenet-o", "OOD detection"),
              "imagenet_r": ("--imagenet-r", "top-1 over its 200 classes"),
              "sketch": ("--imagenet-sketch", "top-1"),
              "v2": ("--imagenet-v2", "top-1"),
              "corruptions": ("--imagenet-c", "corruption errors, mCE")}
# Benchmarks of ImageNet-1k's classes alone: refused with --classes.
IMAGENET_ONLY = ("imagenet_r", "sketch", "v2", "corruptions")


def parse_args(description: str, argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", action="append", required=True,
                        help="our export / training checkpoint, or TIMM_NAME=WEIGHTS_FILE; repeat to compare")
    parser.add_argument("--val", "--imagenet-val", dest="val",
                        help="validation folder, one folder per class (ImageNet val: one per wnid)")
    parser.add_argument("--shifted", "--imagenet-a", dest="shifted", help="shifted set folder (ImageNet-A)")
    parser.add_argument("--ood", "--imagenet-o", dest="ood",
                        help="OOD folder (ImageNet-O); its in-distribution images come from --val")
    parser.add_argument("--imagenet-r", dest="imagenet_r", help="ImageNet-R folder (200 wnid folders)")
    parser.add_argument("--imagenet-sketch", dest="sketch", help="ImageNet-Sketch folder (1000 wnid folders)")
    parser.add_argument("--imagenet-v2", dest="v2",
                        help="ImageNet-V2 folder, any of its three variants (folders named by class index 0-999)")
    parser.add_argument("--imagenet-c", dest="corruptions",
                        help="ImageNet-C root: ROOT/<corruption>/<severity>/<wnid>/*.JPEG, any subset of the 15 + 4 "
                             "corruptions and severities 1-5 (mCE needs all 15 at every severity)")
    parser.add_argument("--classes", help="file of the models' class folder names, one per line in logit order, "
                                          "for a label space other than ImageNet-1k (the shifted and in-distribution "
                                          "sets then use all of them)")
    parser.add_argument("--names", nargs=3, metavar=("VAL", "SHIFTED", "OOD"),
                        help="names of the three sets in the report (default: ImageNet val, IN-A, IN-O)")
    parser.add_argument("--eval-transform", choices=("checkpoint", "reference"), default="checkpoint",
                        help="checkpoint: each model's own validation resize (interpolation and crop pct of its "
                             "training config, timm's pretrained config for TIMM_NAME=WEIGHTS), so clean top-1 "
                             "equals pretraining's val top-1; reference: bilinear resize to input / 0.875 and "
                             "centre crop, as the robustness reference code")
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
    parser.add_argument("--calibration-protocol", choices=CALIBRATION_PROTOCOLS, default="all-bins",
                        help="all-bins: every adaptive bin of 100 counts, the last (remainder) bin too; reference: the "
                             "published reference code, which leaves the last bin out of the sum")
    parser.add_argument("--all-class-argmax", action="store_true",
                        help="ImageNet-A / -R: softmax and argmax over all the model's classes (a prediction outside "
                             "the set's 200 is wrong) instead of over its 200-class slice (the reference)")
    parser.add_argument("--fpr-definition", choices=FPR_DEFINITIONS, default="first-reaching",
                        help="ImageNet-O FPR at 95%% TPR: first-reaching: at the first threshold whose TPR reaches 95%%; "
                             "nearest-recall: at the threshold whose TPR is nearest to 95%% (the reference code)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile each model once for every benchmark but the occlusion sweep")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument("--data-pipeline", choices=("auto", "cpu", "gpu"), default="auto",
                        help="gpu: workers read bytes, the GPU decodes (nvjpeg) and resizes batches; "
                             "auto: gpu on a CUDA device whose torchvision has nvjpeg")
    args = parser.parse_args(argv)
    for name in ("batch_size", "repeats", "random_patch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.workers < 0:
        parser.error(f"--workers must be >= 0, got {args.workers}")
    return args


def check_inputs(args: argparse.Namespace) -> Dict[str, Dict]:
    """Every input and output of the run, before the first image is read: data folders, the report
    folder (writable), and every checkpoint (readable, a known architecture). Returns each
    checkpoint's metadata."""
    for key, (flags, _) in BENCHMARKS.items():
        root = getattr(args, key)
        if root and not Path(root).is_dir():
            raise InputNotFoundError(f"{flags.split()[0]} {root} does not exist or is not a folder")
    if args.ood and not args.val:
        raise ConfigError("--ood needs --val: the in-distribution images of the OOD benchmark are the val "
                          "images of its classes (for ImageNet-O, ImageNet val images of its 200 classes)")
    if not any(getattr(args, key) for key in BENCHMARKS):
        raise ConfigError(f"no data given: pass at least one of {', '.join(f.split()[0] for f, _ in BENCHMARKS.values())}")
    if args.classes:
        for key in IMAGENET_ONLY:
            if getattr(args, key):
                raise ConfigError(f"{BENCHMARKS[key][0]} is an ImageNet-1k benchmark: it cannot be used with --classes")
    if args.dino and not Path(args.dino).is_file():
        raise InputNotFoundError(f"--dino {args.dino} does not exist")
    if args.classes and not Path(args.classes).is_file():
        raise InputNotFoundError(f"--classes {args.classes} does not exist")
    check_writable(Path(args.out))
    metas = {}
    for spec in args.checkpoint:
        meta = read_model_spec(spec)
        if meta.pop("weights", None) is None:  # timm weights: build the model once to know they load, and its sizes
            loaded = load_model(spec, torch.device("cpu"), meta)
            meta.update(num_classes=loaded.model.num_classes, input_size=loaded.input_size,
                        interpolation=loaded.interpolation, crop_pct=loaded.crop_pct)
        metas[spec] = meta
    if args.dino:
        read_model_spec(f"vit_small_patch16_224.dino={args.dino}")
        for spec, meta in metas.items():
            if meta.get("input_size", 224) != 224:
                raise ConfigError(f"--dino saliency is computed at 224 px, {spec} takes {meta['input_size']}-px "
                                  f"images: leave out --dino to use its own attention")
    if args.corruptions:
        for spec, meta in metas.items():
            check_corruption_input(spec, meta.get("input_size", data.IMAGENET_C_SIZE))
    return metas


def check_corruption_input(spec: str, input_size: int) -> None:
    if input_size != data.IMAGENET_C_SIZE:
        raise ConfigError(f"--imagenet-c: ImageNet-C's images are {data.IMAGENET_C_SIZE} px and are evaluated without "
                          f"resizing, as the reference does; {spec} takes {input_size}-px images")


def check_writable(out: Path) -> None:
    probe = out / f".write_test{os.getpid()}"  # one per process: under torchrun every rank checks
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise UserError(f"--out {out}: cannot write the report there ({error.strerror})") from None


def pipeline_transforms(metas: Dict[str, Dict], protocol: str, corruptions: bool) -> List:
    """Every model's evaluation transform (and ImageNet-C's), for the data pipeline to check it can
    run each of them."""
    transforms = [eval_transform(meta.get("input_size", 224),
                                 *eval_resize(protocol, meta.get("interpolation", "bicubic"), meta.get("crop_pct", 0.875)))
                  for meta in metas.values()]
    return transforms + ([data.corruption_transform()] if corruptions else [])


def check_model(model, spec: str, space: data.LabelSpace, classes_file: Optional[str], dino, corruptions: bool) -> None:
    """The model must predict the label space's classes, DINO saliency and ImageNet-C need 224-px inputs."""
    check_class_count(spec, getattr(model.model, "num_classes", None), space, classes_file)
    if dino is not None and model.input_size != dino.input_size:
        raise ConfigError(f"--dino saliency is computed at {dino.input_size} px, {spec} takes "
                          f"{model.input_size}-px images: leave out --dino to use its own attention")
    if corruptions:
        check_corruption_input(spec, model.input_size)


def check_class_count(spec: str, outputs: Optional[int], space: data.LabelSpace, classes_file: Optional[str]) -> None:
    if outputs != len(space.classes):
        where = f"--classes {classes_file}" if classes_file else "ImageNet-1k (no --classes given)"
        raise ConfigError(f"{spec} predicts {outputs} classes but the label space, {where}, has "
                          f"{len(space.classes)}")


def check_label_spaces(metas: Dict[str, Dict], space: data.LabelSpace, classes_file: Optional[str]) -> None:
    """Class counts known from the metadata, checked before any evaluation (an old export without
    them is checked once built, by :func:`check_model`)."""
    for spec, meta in metas.items():
        if meta.get("num_classes") is not None:
            check_class_count(spec, meta["num_classes"], space, classes_file)


def build_sets(args: argparse.Namespace, space: data.LabelSpace, titles: Dict[str, str]) -> Dict[str, data.EvalSet]:
    sets = {}
    if args.val:
        sets["val"] = data.val_set(args.val, space, what=titles["val"])
    if args.shifted:
        sets["shifted"] = data.shifted_set(args.shifted, space, what=titles["shifted"])
    if args.ood:
        sets["ood"] = data.ood_set(args.ood, space, what=titles["ood"])
        sets["ood_in"] = data.ood_in_distribution(args.val, space, what=titles["val"])
    if args.imagenet_r:
        sets["imagenet_r"] = data.imagenet_r(args.imagenet_r)
    if args.sketch:
        sets["sketch"] = data.imagenet_sketch(args.sketch)
    if args.v2:
        sets["v2"] = data.imagenet_v2(args.v2)
    if args.corruptions:
        sets["corruptions"] = data.imagenet_c(args.corruptions)
    return sets


def check_sets(args: argparse.Namespace, sets: Dict[str, data.EvalSet], titles: Dict[str, str]) -> None:
    """What needs the sets' sizes: the reference calibration protocol fails on less than one full bin."""
    if args.calibration_protocol == "reference" and "shifted" in sets:
        count, needed = len(sets["shifted"].dataset), 100
        if count < needed:
            raise ConfigError(f"--calibration-protocol reference needs {needed} images of {titles['shifted']} at least "
                              f"(its bins of {needed}, the last one left out), {args.shifted} has {count}")


def protocol_notes(args: argparse.Namespace, titles: Dict[str, str], nvjpeg: bool) -> List[str]:
    """What the report says of each protocol switch, and of nvjpeg's decoding (the GPU data path on
    CUDA) where it matters."""
    notes = [f"calibration error (--calibration-protocol {args.calibration_protocol}): RMS over adaptive bins of 100 "
             "images sorted by confidence, " + ("all bins including the last" if args.calibration_protocol == "all-bins"
                                                else "the last bin left out of the sum, as the reference code")]
    if args.shifted or args.imagenet_r:
        notes.append(f"{titles['shifted']} / {titles['imagenet_r']} predictions: " + (
            "softmax and argmax over all the model's classes (--all-class-argmax; a prediction outside the set's "
            "classes is wrong)" if args.all_class_argmax else
            "softmax and argmax over the set's 200 classes (logits sliced, as the reference)"))
    if args.ood:
        notes.append(f"{titles['ood']}: AUPR with OOD as the positive class, AUPR-In with in-distribution positive; "
                     "FPR at 95 % TPR (--fpr-definition " + args.fpr_definition + "): " +
                     ("at the first threshold, scores descending, whose TPR reaches 95 %"
                      if args.fpr_definition == "first-reaching" else
                      "at the threshold whose TPR is nearest to 95 %, possibly below it (the reference code)"))
    if args.corruptions:
        notes.append(f"{titles['corruptions']}: the {data.IMAGENET_C_SIZE}-px images as they are (no resize, as the "
                     "reference); top-1 error per corruption and severity; CE = sum of errors over severities / "
                     "AlexNet's; relative CE from the clean error of --imagenet-val; " + ALEXNET_SOURCE)
        if nvjpeg:
            notes.append(f"{titles['corruptions']} decoded on the GPU data path: nvjpeg's chroma upsampling is not "
                         "libjpeg's (the reference decodes with PIL), and with no resize to average them the "
                         "differences reach the model; --data-pipeline cpu decodes as the reference")
    if args.v2:
        notes.append(f"{titles['v2']}: {args.v2} (class-index folders)")
    if args.compile:
        notes.append("models compiled (--compile) for every benchmark but the occlusion sweep")
    return notes


def main(description: str, argv: Optional[List[str]] = None) -> Dict:
    args = parse_args(description, argv)
    metas = check_inputs(args)
    titles = {**IMAGENET_TITLES, **(dict(zip(("val", "shifted", "ood"), args.names)) if args.names else {})}
    reserve_hardware_queues(args.data_pipeline)
    dist_info = init_distributed(args.device)
    logging.basicConfig(level=logging.INFO if dist_info.is_main else logging.WARNING)
    try:
        space = data.read_class_list(args.classes) if args.classes else data.IMAGENET
        check_label_spaces(metas, space, args.classes)
        sets = build_sets(args, space, titles)
        check_sets(args, sets, titles)
        skipped = {key: f"{what}; no {flags} given" for key, (flags, what) in BENCHMARKS.items()
                   if not getattr(args, key)}
        device = dist_info.device
        settings = Settings(batch_size=args.batch_size, workers=args.workers, amp=device.type == "cuda",
                            seed=args.seed, repeats=args.repeats, per_image=args.per_image,
                            random_patch_size=args.random_patch_size, rank=dist_info.rank,
                            world_size=dist_info.world_size, show_progress=dist_info.is_main,
                            data_pipeline=choose_pipeline(args.data_pipeline, device,
                                                          pipeline_transforms(metas, args.eval_transform,
                                                                              bool(args.corruptions))),
                            calibration_protocol=args.calibration_protocol, all_class_argmax=args.all_class_argmax,
                            fpr_definition=args.fpr_definition, compile=args.compile)
        logging.info("evaluating on %s%s, %s data pipeline%s", device, " (--device auto)" if args.device == "auto" else "",
                     settings.data_pipeline, ", compiled models" if args.compile else "")
        dino = load_model(f"vit_small_patch16_224.dino={args.dino}", device) if args.dino else None
        results: Dict[str, Dict] = {}
        transforms_used = []
        for spec in args.checkpoint:
            model = load_model(spec, device)
            check_model(model, spec, space, args.classes, dino, bool(args.corruptions))
            for evalset in sets.values():
                if not isinstance(evalset, data.CorruptionSet):  # ImageNet-C keeps its own: no resize
                    evalset.dataset.transform = model.eval_transform(args.eval_transform)
            name = model.name if model.name not in results else f"{model.name} ({spec})"
            interpolation, crop_pct = model.eval_resize(args.eval_transform)
            transforms_used.append(f"{name} {interpolation} {int(model.input_size / crop_pct)} -> {model.input_size}")
            results[name] = {}
            if "val" in sets:
                results[name]["val"] = evaluate_val(model, sets["val"], settings, dino)
            predictor = classifier(model, settings)
            if "shifted" in sets:
                results[name]["shifted"] = evaluate_shifted(predictor, sets["shifted"], settings)
            if "ood" in sets:
                results[name]["ood"] = evaluate_ood(predictor, sets["ood"], sets["ood_in"], settings)
            for key in ("imagenet_r", "sketch", "v2"):
                if key in sets:
                    results[name][key] = evaluate_top1(predictor, sets[key], settings)
            if "corruptions" in sets:
                clean = results[name].get("val", {}).get("top1")
                results[name]["corruptions"] = evaluate_corruptions(predictor, sets["corruptions"], settings, clean)
            del model, predictor
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        notes = [f"checkpoints: {', '.join(args.checkpoint)}",
                 f"label space: {args.classes or 'ImageNet-1k'}",
                 f"evaluation transform ({'--eval-transform ' + args.eval_transform}: "
                 + ("each model's own validation resize" if args.eval_transform == "checkpoint" else
                    f"the reference code's {REFERENCE_EVAL['interpolation']} resize to input / "
                    f"{REFERENCE_EVAL['crop_pct']}") + f", then centre crop): {'; '.join(transforms_used)}",
                 f"saliency: {'DINO ViT-S/16 head 1 from ' + args.dino if args.dino else 'each model’s own class attention (no --dino given)'}",
                 f"random dropping: {'per image' if args.per_image else 'one index set per batch (as the reference)'}, "
                 f"{args.repeats} repeat(s), seed {args.seed}", *protocol_notes(
                     args, titles, settings.data_pipeline == "gpu" and device.type == "cuda")]
        if dist_info.is_main:
            files = write_report(results, skipped, Path(args.out), notes, titles)
            print(f"wrote {', '.join(str(path) for path in files.values())}")
        return results
    finally:
        cleanup()
