"""Command-line options of the pretraining program; a YAML file (``--config``) sets their defaults.

Precedence: built-in defaults < YAML (``_base_`` first) < command-line flags. The resolved configuration is saved as
``config.yaml`` beside the checkpoints and inside every checkpoint.
"""
from __future__ import annotations

import argparse
import ast
from pathlib import Path
from typing import Dict, List, Optional

import yaml


class KeyValueAction(argparse.Action):
    """``--model-kwargs depth=2 embed_dim=64`` -> {'depth': 2, 'embed_dim': 64} (Python literals)."""

    def __call__(self, parser, namespace, values, option_string=None):
        parsed = dict(getattr(namespace, self.dest) or {})
        for item in values:
            key, sep, value = item.partition("=")
            if not sep:
                parser.error(f"{option_string} expects key=value pairs, got {item!r}")
            try:
                parsed[key] = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                parsed[key] = value
        setattr(namespace, self.dest, parsed)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser("MixPro ImageNet pretraining", add_help=True,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", default="", help="YAML file of defaults (configs/pretrain/*.yaml)")

    group = parser.add_argument_group("data")
    group.add_argument("--data-path", default="", help="ImageNet root: train/ and val/ class folders, or train.tar / val.tar")
    group.add_argument("--num-classes", type=int, default=1000)
    group.add_argument("--class-map", default="", help="optional file of class folder names, one per line, in index order")
    group.add_argument("--workers", type=int, default=8, help="data loader processes per training process")
    group.add_argument("--pin-memory", action=argparse.BooleanOptionalAction, default=True)
    group.add_argument("--data-pipeline", choices=("auto", "cpu", "gpu"), default="auto",
                       help="gpu: workers read bytes, the GPU decodes (nvjpeg) and augments batches; cpu: timm's "
                            "transforms in the workers; auto: gpu on a CUDA device whose torchvision has nvjpeg")
    group.add_argument("--max-bad-fraction", type=float, default=0.001,
                       help="abort when more than this fraction of images is unreadable (they are skipped and counted)")

    group = parser.add_argument_group("model")
    group.add_argument("--model", default="deit_small_patch16_224", help="timm model name (pvt_* after import pretrain.models)")
    group.add_argument("--model-kwargs", nargs="*", default={}, action=KeyValueAction,
                       help="extra timm.create_model arguments, key=value")
    group.add_argument("--input-size", type=int, default=224)
    group.add_argument("--drop-path", type=float, default=0.1)
    group.add_argument("--model-ema", action=argparse.BooleanOptionalAction, default=False,
                       help="keep an EMA of the weights (paper: does not help, off)")
    group.add_argument("--model-ema-decay", type=float, default=0.99996)

    group = parser.add_argument_group("optimisation")
    group.add_argument("--epochs", type=int, default=300)
    group.add_argument("--batch-size", type=int, default=128, help="per process")
    group.add_argument("--eval-batch-size", type=int, default=0, help="per process; 0 = batch size")
    group.add_argument("--opt", default="adamw", help="timm optimizer name")
    group.add_argument("--opt-eps", type=float, default=1e-8)
    group.add_argument("--opt-betas", type=float, nargs=2, default=(0.9, 0.999))
    group.add_argument("--lr", type=float, default=1e-3, help="learning rate at --lr-base-batch images per step")
    group.add_argument("--lr-base-batch", type=int, default=1024,
                       help="lr is scaled linearly: lr * global batch / lr-base-batch (0 disables scaling)")
    group.add_argument("--weight-decay", type=float, default=0.05)
    group.add_argument("--sched", default="cosine", help="timm scheduler name, stepped every iteration")
    group.add_argument("--warmup-epochs", type=float, default=20)
    group.add_argument("--warmup-lr", type=float, default=1e-6)
    group.add_argument("--min-lr", type=float, default=1e-5)
    group.add_argument("--clip-grad", type=float, default=0.0, help="max gradient norm (0: no clipping)")
    group.add_argument("--amp", choices=("bf16", "fp16", "none"), default="bf16",
                       help="autocast dtype; fp16 uses a GradScaler")
    group.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False, help="torch.compile the model")
    group.add_argument("--compile-mode", default="default",
                       choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
                       help="torch.compile mode; reduce-overhead replays CUDA graphs, which removes the per-kernel "
                            "launch cost that bounds small models' compiled steps")
    group.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=False)

    group = parser.add_argument_group("augmentation (DeiT recipe)")
    group.add_argument("--auto-augment", default="rand-m9-mstd0.5-inc1", help="timm auto-augment string; '' disables")
    group.add_argument("--crop-scale", type=float, nargs=2, default=(0.08, 1.0),
                       help="RandomResizedCrop area range (timm's scale)")
    group.add_argument("--color-jitter", type=float, default=0.4)
    group.add_argument("--reprob", type=float, default=0.25, help="random erasing probability")
    group.add_argument("--remode", default="pixel")
    group.add_argument("--recount", type=int, default=1)
    group.add_argument("--interpolation", default="bicubic")
    group.add_argument("--no-aug", action="store_true",
                       help="train on resized centre crops without random augmentation (debugging, equivalence tests)")
    group.add_argument("--eval-crop-pct", type=float, default=0.875, help="eval resize = input / crop_pct (256 for 224)")

    group = parser.add_argument_group("mixing (mixpro.BatchMixer)")
    group.add_argument("--recipe", default="mixpro", help="name recorded in logs and exported checkpoints")
    group.add_argument("--smoothing", type=float, default=0.1, help="label smoothing")
    group.add_argument("--mix-prob", type=float, default=1.0, help="probability that a batch is mixed at all")
    group.add_argument("--mixup", type=float, default=0.8, help="Mixup alpha (0 disables)")
    group.add_argument("--cutmix", type=float, default=1.0, help="CutMix alpha (0 disables)")
    group.add_argument("--cutmix-minmax", type=float, nargs=2, default=None)
    group.add_argument("--mixup-switch-prob", type=float, default=0.5, help="CutMix probability when both are on")
    group.add_argument("--maskmix-prob", type=float, default=0.5, help="probability of a MaskMix batch")
    group.add_argument("--mask-patch-size", type=int, default=64, help="MaskMix cell size in pixels")
    group.add_argument("--maskmix-beta", type=float, default=1.0)
    group.add_argument("--per-sample-ratio", action=argparse.BooleanOptionalAction, default=False)
    group.add_argument("--maskmix-label", choices=("area", "transmix", "pal"), default="pal")
    group.add_argument("--cutmix-label", choices=("area", "transmix", "pal"), default="area")
    group.add_argument("--partner", choices=("flip", "perm"), default="perm")
    group.add_argument("--detach-alpha", action=argparse.BooleanOptionalAction, default=False)

    group = parser.add_argument_group("run")
    group.add_argument("--output-dir", default="output/pretrain")
    group.add_argument("--resume", default="", help="checkpoint to resume from, or 'auto' for OUTPUT_DIR/checkpoint_last.pth")
    group.add_argument("--save-every", type=int, default=10, help="keep checkpoint_epochNNNN.pth every N epochs (0: never)")
    group.add_argument("--eval-every", type=int, default=1, help="evaluate every N epochs (and after the last)")
    group.add_argument("--seed", type=int, default=0)
    group.add_argument("--device", default="cuda", help="cuda or cpu (cpu is used when no GPU is present)")
    group.add_argument("--print-freq", type=int, default=50, help="progress and NaN checks every N steps")
    group.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=False)
    group.add_argument("--benchmark", action="store_true",
                       help="measure training img/s on synthetic images on the device (no data needed)")
    group.add_argument("--benchmark-steps", type=int, default=100)
    group.add_argument("--benchmark-warmup", type=int, default=20)
    return parser


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = get_args_parser()
    known, _ = parser.parse_known_args(argv)
    if known.config:
        parser.set_defaults(**load_yaml_defaults(known.config, parser))
    return parser.parse_args(argv)


def load_yaml_defaults(path: str, parser: argparse.ArgumentParser) -> Dict:
    """Option values of a YAML file; ``_base_: other.yaml`` or a list of files (relative to the file,
    later ones overriding earlier ones) is read first and overridden, as OpenMMLab configs do."""
    values = read_yaml_chain(Path(path))
    known = {action.dest for action in parser._actions}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{path}: unknown option(s) {unknown}; options are the command-line flags with '_' for '-'")
    return values


def read_yaml_chain(file: Path, seen: tuple = ()) -> Dict:
    if not file.is_file():
        raise FileNotFoundError(f"config file {str(file)!r} does not exist")
    if file.resolve() in seen:
        raise ValueError(f"{file}: _base_ chain loops back on itself")
    values = yaml.safe_load(file.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{file}: expected a mapping of option: value, got {type(values).__name__}")
    base = values.pop("_base_", None)
    if base is None:
        return values
    merged: Dict = {}
    for name in [base] if isinstance(base, str) else base:  # later bases override earlier ones
        merged.update(read_yaml_chain(file.parent / name, seen + (file.resolve(),)))
    return {**merged, **values}


def to_yaml(config: argparse.Namespace) -> str:
    values = {key: (list(value) if isinstance(value, tuple) else value) for key, value in vars(config).items()}
    return yaml.safe_dump(values, sort_keys=True)
