"""Command-line options of the pretraining program; a YAML file (``--config``) sets their defaults.

Precedence: built-in defaults < YAML (``_base_`` first) < command-line flags. The resolved configuration is saved as
``config.yaml`` (and as timm's ``args.yaml``) beside the checkpoints and inside every checkpoint. timm's train.py
names are accepted where they mean the same: -c, --data-dir, --lr-base, --lr-base-size, --aa, --scale, --crop-pct,
--mixup-prob, --log-interval, --img-size, --input-size 3 H W, --amp-dtype, --torchcompile, --pretrained-path.
"""
from __future__ import annotations

import argparse
import ast
import difflib
import math
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from mixpro.mask import MASK_STRATEGIES
from mixpro.mixer import ALPHA_RULES, PARTNERS, SHUFFLES

from .distributed import DEVICE_HELP
from .errors import ConfigError, InputNotFoundError

INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "lanczos", "hamming", "box")
SCHEDULERS = ("cosine", "tanh", "step", "multistep", "poly")


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


class InputSizeAction(argparse.Action):
    """``--input-size 224`` or timm's ``--input-size 3 224 224`` -> 224 (square RGB inputs)."""

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            setattr(namespace, self.dest, input_side(values))
        except ValueError as error:
            parser.error(f"{option_string}: {error}")


def input_side(values: Any) -> int:
    """The side of a square RGB input from one value or timm's (channels, height, width)."""
    values = list(values) if isinstance(values, (list, tuple)) else [values]
    if any(isinstance(v, bool) or not isinstance(v, int) and not (isinstance(v, str) and v.strip().isdigit())
           for v in values):
        raise ValueError(f"{values!r} is not a size in pixels (one integer, or 3 H W)")
    if len(values) == 1:
        return int(values[0])
    if len(values) == 3:
        channels, height, width = (int(v) for v in values)
        if channels != 3 or height != width:
            raise ValueError(f"{channels} {height} {width}: the suite trains square RGB inputs (3 S S); "
                             f"MaskMix cells and the GPU data path assume a square")
        return height
    raise ValueError(f"expected one size or three values C H W, got {' '.join(map(str, values))}")


class AmpDtypeAction(argparse.Action):
    """timm's ``--amp-dtype bfloat16|float16`` -> ``--amp bf16|fp16``."""

    DTYPES = {"bfloat16": "bf16", "float16": "fp16"}

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, self.DTYPES[values])


class TorchCompileAction(argparse.Action):
    """timm's ``--torchcompile [BACKEND]`` -> ``--compile`` (and ``--compile-backend BACKEND``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.compile = True
        if values:
            namespace.compile_backend = values


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser("MixPro ImageNet pretraining", add_help=True,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("-c", "--config", default="", help="YAML file of defaults (configs/pretrain/*.yaml)")

    group = parser.add_argument_group("data")
    group.add_argument("--data-path", "--data-dir", default="",
                       help="ImageNet root: train/ and val/ class folders, or train.tar / val.tar; with --dataset "
                            "torch/NAME the root torchvision reads (and downloads into)")
    group.add_argument("--dataset", default="",
                       help="'' (default): class folders or tars at --data-path, read as files (either data "
                            "pipeline); torch/NAME: a torchvision dataset through timm's create_dataset "
                            "(torch/cifar10, torch/cifar100, torch/mnist, torch/image_folder, ...; CPU pipeline)")
    group.add_argument("--dataset-download", action=argparse.BooleanOptionalAction, default=False,
                       help="let torchvision download a torch/NAME dataset into --data-path")
    group.add_argument("--train-split", default="train", help="training split: sub-folder / tar name, or torch split")
    group.add_argument("--val-split", default="val", help="validation split: sub-folder / tar name (torch/NAME: "
                                                          "val means the test set)")
    group.add_argument("--num-classes", type=int, default=None, help="default: the number of classes in the data")
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
    group.add_argument("--initial-checkpoint", "--pretrained-path", default="",
                       help="fine-tune from this file: our export / training checkpoint / .safetensors, or a timm "
                            "or DeiT state dict; the classifier is re-initialised when the class count differs")
    group.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=False,
                       help="start from timm's pretrained weights of --model (fetched by timm, or a local file "
                            "through --model-kwargs pretrained_cfg_overlay=\"{'file': PATH}\"); the classifier is "
                            "re-initialised for --num-classes")
    group.add_argument("--input-size", "--img-size", type=int, nargs="+", default=224, action=InputSizeAction,
                       metavar="SIZE", help="side of the square input; timm's 3 H W (H = W) is accepted")
    group.add_argument("--drop-path", type=float, default=0.1)
    group.add_argument("--model-ema", action=argparse.BooleanOptionalAction, default=False,
                       help="keep an EMA of the weights (paper: does not help, off)")
    group.add_argument("--model-ema-decay", type=float, default=0.99996)

    group = parser.add_argument_group("optimisation")
    group.add_argument("--epochs", type=int, default=300)
    group.add_argument("--batch-size", type=int, default=128, help="per process and step")
    group.add_argument("--grad-accum-steps", type=int, default=1,
                       help="steps whose gradients are summed before each update: the global batch (which scales "
                            "the lr) is processes x --batch-size x this")
    group.add_argument("--eval-batch-size", type=int, default=0, help="per process; 0 = batch size")
    group.add_argument("--opt", default="adamw", help="timm optimizer name (timm.optim.list_optimizers())")
    group.add_argument("--opt-eps", type=float, default=1e-8)
    group.add_argument("--opt-betas", type=float, nargs=2, default=(0.9, 0.999))
    group.add_argument("--lr", "--lr-base", type=float, default=1e-3,
                       help="learning rate at --lr-base-batch images per step (timm's --lr-base)")
    group.add_argument("--lr-base-batch", "--lr-base-size", type=int, default=1024,
                       help="lr is scaled linearly: lr * global batch / lr-base-batch (0 disables scaling); the "
                            "start-up log prints the lr used")
    group.add_argument("--weight-decay", type=float, default=0.05)
    group.add_argument("--sched", default="cosine", choices=SCHEDULERS, help="timm scheduler, stepped every iteration")
    group.add_argument("--warmup-epochs", type=float, default=20)
    group.add_argument("--warmup-lr", type=float, default=1e-6)
    group.add_argument("--min-lr", type=float, default=1e-5)
    group.add_argument("--clip-grad", type=float, default=0.0, help="max gradient norm (0: no clipping)")
    group.add_argument("--amp", choices=("bf16", "fp16", "none"), default="bf16",
                       help="autocast dtype; fp16 uses a GradScaler")
    group.add_argument("--amp-dtype", dest="amp", choices=tuple(AmpDtypeAction.DTYPES), action=AmpDtypeAction,
                       default=argparse.SUPPRESS, help="timm's name for --amp bf16 / fp16")
    group.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False, help="torch.compile the model")
    group.add_argument("--compile-backend", default="inductor", help="torch.compile backend")
    group.add_argument("--torchcompile", nargs="?", const="", metavar="BACKEND", action=TorchCompileAction,
                       default=argparse.SUPPRESS, help="timm's name for --compile [--compile-backend BACKEND]")
    group.add_argument("--compile-mode", default="default",
                       choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
                       help="torch.compile mode; reduce-overhead replays CUDA graphs, which removes the per-kernel "
                            "launch cost that bounds small models' compiled steps")
    group.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=False)

    group = parser.add_argument_group("augmentation (DeiT recipe)")
    group.add_argument("--auto-augment", "--aa", default="rand-m9-mstd0.5-inc1", help="timm auto-augment string; '' disables")
    group.add_argument("--crop-scale", "--scale", type=float, nargs=2, default=(0.08, 1.0),
                       help="RandomResizedCrop area range (timm's scale)")
    group.add_argument("--color-jitter", type=float, default=0.4)
    group.add_argument("--reprob", type=float, default=0.25, help="random erasing probability")
    group.add_argument("--remode", default="pixel", choices=("pixel", "rand", "const"), help="random erasing fill")
    group.add_argument("--recount", type=int, default=1)
    group.add_argument("--interpolation", default="bicubic", choices=INTERPOLATIONS,
                       help="resize filter of training crops and of evaluation")
    group.add_argument("--no-aug", action="store_true",
                       help="train on resized centre crops without random augmentation (debugging, equivalence tests)")
    group.add_argument("--eval-crop-pct", "--crop-pct", type=float, default=0.875, help="eval resize = input / crop_pct (256 for 224)")

    group = parser.add_argument_group("mixing (mixpro.BatchMixer)")
    group.add_argument("--recipe", default="mixpro", help="name recorded in logs and exported checkpoints")
    group.add_argument("--smoothing", type=float, default=0.1, help="label smoothing")
    group.add_argument("--mix-prob", "--mixup-prob", type=float, default=1.0, help="probability that a batch is mixed at all")
    group.add_argument("--mixup-off-epoch", type=int, default=0,
                       help="from this epoch on no batch is mixed (only label smoothing); 0: mix to the end")
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
    group.add_argument("--partner", choices=PARTNERS, default="perm",
                       help="flip: sample i mixes with B-1-i; perm: a random permutation; perm_maskmix: permutation "
                            "on MaskMix batches, flip on Mixup/CutMix batches (the official code)")
    group.add_argument("--detach-alpha", action=argparse.BooleanOptionalAction, default=False)
    group.add_argument("--smooth-pal-targets", action=argparse.BooleanOptionalAction, default=True,
                       help="label smoothing on PAL batches too (--no-smooth-pal-targets: the official code's plain "
                            "cross-entropy there)")

    group = parser.add_argument_group("ablations (the paper's Tables 7-10, Fig. 5)")
    group.add_argument("--mask-strategy", choices=MASK_STRATEGIES, default="random",
                       help="MaskMix cells drawn at random, or BEiT-style blocks of cells (Table 7)")
    group.add_argument("--mask-grid-offset", type=int, default=0,
                       help="pixels the MaskMix cell grid is shifted off the patch grid (Table 8 B: half a patch)")
    group.add_argument("--subpatch-cells", action=argparse.BooleanOptionalAction, default=False,
                       help="allow MaskMix cells smaller than a patch (Table 8 C)")
    group.add_argument("--maskmix-shuffle", choices=SHUFFLES, default="none",
                       help="shuffle the patches of the pasted image, of the canvas image, or both (Table 9)")
    group.add_argument("--cutmix-snap", action=argparse.BooleanOptionalAction, default=False,
                       help="snap CutMix boxes to patch borders (Table 8 A)")
    group.add_argument("--alpha-rule", choices=ALPHA_RULES, default="pal",
                       help="PAL's progressive factor: pal (from the logits), constant 0.5, linear T/T_max, parabolic "
                            "(T/T_max)^2, learnable (a scalar optimised with the model, logged) (Table 10)")

    group = parser.add_argument_group("run")
    group.add_argument("--output-dir", default="output/pretrain")
    group.add_argument("--resume", default="", help="checkpoint to resume from, or 'auto' for OUTPUT_DIR/checkpoint_last.pth "
                                                    "(the newest readable checkpoint of OUTPUT_DIR if that one is damaged)")
    group.add_argument("--resume-allow-change", nargs="+", default=[], metavar="KEY",
                       help="options (e.g. lr batch_size) that may differ from the resumed run's config; any other "
                            "difference stops the run. Epochs, frequencies, workers and paths may always change")
    group.add_argument("--save-every", type=int, default=10, help="keep checkpoint_epochNNNN.pth every N epochs (0: never)")
    group.add_argument("--eval-every", type=int, default=1, help="evaluate every N epochs (and after the last)")
    group.add_argument("--seed", type=int, default=0)
    group.add_argument("--device", default="auto", help=DEVICE_HELP)
    group.add_argument("--print-freq", "--log-interval", type=int, default=50, help="progress and NaN checks every N steps")
    group.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=False)
    group.add_argument("--benchmark", action="store_true",
                       help="measure training img/s on synthetic images on the device (no data needed)")
    group.add_argument("--benchmark-steps", type=int, default=100)
    group.add_argument("--benchmark-warmup", type=int, default=20)
    return parser


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Flags over YAML over defaults, every value checked (:func:`check_config`) before anything is built."""
    parser = get_args_parser()
    known, _ = parser.parse_known_args(argv)
    if known.config:
        parser.set_defaults(**load_yaml_defaults(known.config, parser))
    config = parser.parse_args(argv)
    check_config(config)
    return config


def load_yaml_defaults(path: str, parser: argparse.ArgumentParser) -> Dict:
    """Option values of a YAML file; ``_base_: other.yaml`` or a list of files (relative to the file,
    later ones overriding earlier ones) is read first and overridden, as OpenMMLab configs do. Each
    value goes through the same type and choice checks as its command-line flag."""
    values = read_yaml_chain(Path(path))
    actions = {action.dest: action for action in parser._actions  # timm's alias actions are command-line only
               if action.dest != "help" and action.default is not argparse.SUPPRESS}
    unknown = sorted(set(values) - set(actions))
    if unknown:
        hints = [f"{key} (did you mean {close[0]}?)" if (close := difflib.get_close_matches(key, actions, 1)) else key
                 for key in unknown]
        raise ConfigError(f"{path}: unknown option(s) {', '.join(hints)}; options are the command-line flags with "
                          f"'_' for '-' (python tools/train.py --help)")
    problems = []
    for key, value in values.items():
        try:
            values[key] = _yaml_value(actions[key], value)
        except ValueError as error:
            problems.append(f"{key}: {error}")
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    return values


def _is_flag(action: argparse.Action) -> bool:
    return isinstance(action, (argparse.BooleanOptionalAction, argparse._StoreTrueAction,
                               argparse._StoreFalseAction))


def _convert(action: argparse.Action, value: Any) -> Any:
    """One YAML scalar as its flag's ``type`` would parse it (YAML reads 1e-3 as a string)."""
    kind = action.type or str
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
        raise ValueError(f"{value!r} is not a{'n' if kind is int else ''} {kind.__name__}")
    if kind is str:
        if not isinstance(value, (str, int, float)):
            raise ValueError(f"{value!r} is not a string")
        return str(value)
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{value!r} is not an integer")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a{'n' if kind is int else ''} {kind.__name__}") from None


def _literal(value: Any) -> Any:
    """A string as the command line's key=value would read it (YAML leaves 1e-3 a string)."""
    if isinstance(value, str):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def _yaml_value(action: argparse.Action, value: Any) -> Any:
    if _is_flag(action):
        if not isinstance(value, bool):
            raise ValueError(f"{value!r} is not true or false")
        return value
    if value is None and action.default is None:  # e.g. num_classes: null, from the data
        return None
    if isinstance(action, InputSizeAction):
        return input_side(value)
    if isinstance(action, KeyValueAction):
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError(f"{value!r} is not a mapping of keyword: value")
        return {key: _literal(item) for key, item in value.items()}
    if value is None and isinstance(action.default, str):  # an empty YAML value: the option is off
        return ""
    if isinstance(action.nargs, int) or action.nargs in ("+", "*"):
        if value is None and action.default is None:
            return None
        if action.nargs in ("+", "*") and not isinstance(value, (list, tuple)):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{value!r} is not a list")
        if isinstance(action.nargs, int) and len(value) != action.nargs:
            raise ValueError(f"{value!r} does not have {action.nargs} values")
        return [_convert(action, item) for item in value]
    converted = _convert(action, value)
    if action.choices is not None and converted not in action.choices:
        raise ValueError(f"{value!r} is not one of {', '.join(map(str, action.choices))}")
    return converted


# (option, check, what it must be): the ranges every run is checked against before anything is built.
_RANGES = [
    ("num_classes", lambda v: v is None or v >= 2, ">= 2 (or left out: from the data)"), ("workers", lambda v: v >= 0, ">= 0"),
    ("max_bad_fraction", lambda v: 0 <= v <= 1, "in [0, 1]"), ("input_size", lambda v: v > 0, "> 0"),
    ("drop_path", lambda v: 0 <= v < 1, "in [0, 1)"), ("model_ema_decay", lambda v: 0 < v < 1, "in (0, 1)"),
    ("epochs", lambda v: v >= 1, ">= 1"), ("batch_size", lambda v: v >= 1, ">= 1"),
    ("grad_accum_steps", lambda v: v >= 1, ">= 1"), ("mixup_off_epoch", lambda v: v >= 0, ">= 0 (0: never)"),
    ("eval_batch_size", lambda v: v >= 0, ">= 0 (0: the batch size)"), ("opt_eps", lambda v: v > 0, "> 0"),
    ("opt_betas", lambda v: all(0 <= b < 1 for b in v), "two values in [0, 1)"), ("lr", lambda v: v > 0, "> 0"),
    ("lr_base_batch", lambda v: v >= 0, ">= 0 (0: no scaling)"), ("weight_decay", lambda v: v >= 0, ">= 0"),
    ("warmup_epochs", lambda v: v >= 0, ">= 0"), ("warmup_lr", lambda v: v >= 0, ">= 0"),
    ("min_lr", lambda v: v >= 0, ">= 0"), ("clip_grad", lambda v: v >= 0, ">= 0 (0: no clipping)"),
    ("crop_scale", lambda v: 0 < v[0] <= v[1] <= 1, "two values 0 < low <= high <= 1"),
    ("color_jitter", lambda v: v >= 0, ">= 0"), ("reprob", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("recount", lambda v: v >= 1, ">= 1"), ("eval_crop_pct", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("smoothing", lambda v: 0 <= v < 1, "in [0, 1)"), ("mix_prob", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("mixup", lambda v: v >= 0, ">= 0 (0: off)"), ("cutmix", lambda v: v >= 0, ">= 0 (0: off)"),
    ("cutmix_minmax", lambda v: v is None or 0 < v[0] <= v[1] <= 1, "two values 0 < low <= high <= 1"),
    ("mixup_switch_prob", lambda v: 0 <= v <= 1, "in [0, 1]"), ("maskmix_prob", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("mask_patch_size", lambda v: v > 0, "> 0"), ("maskmix_beta", lambda v: v > 0, "> 0"),
    ("mask_grid_offset", lambda v: v >= 0, ">= 0"),
    ("save_every", lambda v: v >= 0, ">= 0 (0: never)"), ("eval_every", lambda v: v >= 1, ">= 1"),
    ("print_freq", lambda v: v >= 1, ">= 1"), ("benchmark_steps", lambda v: v >= 1, ">= 1"),
    ("benchmark_warmup", lambda v: v >= 0, ">= 0"),
]


def flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def check_config(config: argparse.Namespace) -> None:
    """Every problem of a resolved configuration in one :class:`ConfigError`, before any work: ranges,
    names timm must know, and the files it names."""
    import timm
    import timm.optim

    import pretrain.models  # noqa: F401  (PVT v1 in timm's registry)

    infinite = {key for key, value in vars(config).items() if isinstance(value, float) and not math.isfinite(value)}
    problems = [f"{flag(key)} {getattr(config, key)} must be finite" for key in sorted(infinite)]
    problems += [f"{flag(key)} {getattr(config, key)} must be {what}" for key, check, what in _RANGES
                 if key not in infinite and not check(getattr(config, key))]
    if not timm.is_model(config.model):
        close = difflib.get_close_matches(config.model, timm.list_models(), 3)
        problems.append(f"--model {config.model!r} is not a timm model" + (f" (did you mean {', '.join(close)}?)"
                                                                           if close else ""))
    optimizers = timm.optim.list_optimizers()
    base_optimizer = config.opt.lower().removeprefix("lookahead_")  # timm wraps any optimizer so
    if base_optimizer not in optimizers:
        close = difflib.get_close_matches(base_optimizer, optimizers, 3)
        problems.append(f"--opt {config.opt!r} is not a timm optimizer" + (f" (did you mean {', '.join(close)}?)"
                                                                           if close else ""))
    if problems:
        raise ConfigError("; ".join(problems))
    if config.initial_checkpoint and not Path(config.initial_checkpoint).is_file():
        raise InputNotFoundError(f"--initial-checkpoint {config.initial_checkpoint!r} does not exist")
    if config.class_map and not Path(config.class_map).is_file():
        raise InputNotFoundError(f"--class-map {config.class_map!r} does not exist (a file of class folder names, "
                                 f"one per line)")


def read_yaml_chain(file: Path, seen: tuple = ()) -> Dict:
    if not file.is_file():
        raise InputNotFoundError(f"config file {str(file)!r} does not exist")
    if file.resolve() in seen:
        raise ConfigError(f"{file}: _base_ chain loops back on itself")
    try:
        values = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{file} is not valid YAML: {' '.join(str(error).split())}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{file}: expected a mapping of option: value, got {type(values).__name__}")
    base = values.pop("_base_", None)
    if base is None:
        return values
    merged: Dict = {}
    for name in [base] if isinstance(base, str) else base:  # later bases override earlier ones
        merged.update(read_yaml_chain(file.parent / name, seen + (file.resolve(),)))
    return {**merged, **values}


def to_yaml(config: argparse.Namespace, leave_out: tuple = ()) -> str:
    """The resolved configuration as YAML; ``leave_out``: options that belong to one command line only
    (a permission to change a resumed run must not pass on to the next run made from this file)."""
    values = {key: (list(value) if isinstance(value, tuple) else value) for key, value in vars(config).items()
              if key not in leave_out}
    return yaml.safe_dump(values, sort_keys=True)
