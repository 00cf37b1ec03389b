"""Checkpoint files: atomic writes, one reader with a clear error per kind of bad file, the model
metadata both kinds carry, and the export for transfer and evaluation.

A training checkpoint holds: model, optimizer, scheduler, scaler, (EMA), epoch (last completed),
step, best top-1, the epoch's log record, the RNG states of every rank, every rank's mixer state and
the resolved config, all as tensors, numbers, strings, lists and dicts, so
``torch.load(weights_only=True)`` reads it. An export holds the weights and :func:`model_meta`.
"""
from __future__ import annotations

import importlib
import json
import os
import pickle
import random
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import torch

from .errors import CheckpointError, InputNotFoundError

LAST = "checkpoint_last.pth"
SAFETENSORS_META = "mixpro_meta"  # header key of an export's metadata (JSON)
BEST = "checkpoint_best.pth"


def epoch_name(epoch: int) -> str:
    return f"checkpoint_epoch{epoch:04d}.pth"


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; flushed to disk and renamed over ``path`` when the
    block succeeds, removed when it fails: a crash leaves either the old file or the new one, never a
    torn one (a kill leaves the temporary, which resume removes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_atomic(obj: Dict, path: Path) -> None:
    """``torch.save`` through :func:`atomic_file`."""
    with atomic_file(path) as tmp, open(tmp, "wb") as handle:
        torch.save(obj, handle)


TRAINING_KEYS = ("model", "optimizer", "scheduler", "scaler", "epoch", "rng", "mixer", "config")


def read_checkpoint(path: Path) -> Dict:
    """The contents of a checkpoint file, with one clear error per kind of bad file: missing, empty,
    not a PyTorch file, truncated, or holding Python objects beyond tensors, numbers and strings
    (never loaded: ours do not hold any, and unpickling them would run code from the file)."""
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} is a folder, not a file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {str(path)!r} is empty (0 bytes): its write never finished")
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head[:2] != b"PK" and head[:1] != b"\x80":  # a torch zip archive, or a legacy pickle
        raise CheckpointError(f"{str(path)!r} is not a PyTorch checkpoint (it starts with {head!r}, not a torch.save "
                              f"zip archive)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged file can fail anywhere in the unpickler, with any exception type
        if isinstance(error, pickle.UnpicklingError) and _refused_real_global(str(error)):
            raise CheckpointError(
                f"{str(path)!r} holds Python objects beyond tensors, numbers and strings, so it was not written by "
                f"this suite; it is not loaded, because unpickling them would run code from the file. Convert it to a "
                f"plain state dict where it was made, or pass TIMM_NAME=FILE for timm weights") from None
        first_line = (str(error).splitlines() or [""])[0][:160]
        raise CheckpointError(f"{str(path)!r} ({size} bytes) is truncated or corrupt: torch.load failed with "
                              f"{type(error).__name__}: {first_line}") from None


def _refused_real_global(message: str) -> bool:
    """Whether torch's weights-only refusal names a class that exists (the file holds such objects);
    a name cut short means the file itself was cut short."""
    found = re.search(r"Unsupported global: GLOBAL (\S+) was not", message)
    if not found:
        return False
    module, _, name = found.group(1).rpartition(".")
    try:
        return bool(name) and hasattr(importlib.import_module(module), name)
    except (ImportError, ValueError):
        return False


def read_training_checkpoint(path: Path) -> Dict:
    """A checkpoint written by tools/train.py (what resuming and exporting need)."""
    state = read_checkpoint(path)
    if not isinstance(state, dict) or not all(key in state for key in TRAINING_KEYS):
        if isinstance(state, dict) and "state_dict" in state and "meta" in state:
            what = "an exported model (weights and metadata only)"
        elif isinstance(state, dict) and state and all(isinstance(v, torch.Tensor) for v in state.values()):
            what = "a plain state dict (weights only)"
        else:
            what = f"missing {[key for key in TRAINING_KEYS if key not in state] if isinstance(state, dict) else 'every key'}"
        raise CheckpointError(f"{str(path)!r} is not a training checkpoint ({what}); expected a checkpoint_*.pth "
                              f"from a tools/train.py output folder")
    return state


def model_meta(config: Dict) -> Dict:
    """What rebuilding and evaluating a run's model needs, from its resolved configuration."""
    return {"arch": config["model"], "model_kwargs": dict(config.get("model_kwargs") or {}),
            "num_classes": config["num_classes"], "input_size": config["input_size"],
            "interpolation": config.get("interpolation", "bicubic"), "crop_pct": config.get("eval_crop_pct", 0.875),
            "recipe": config.get("recipe", "")}


def rng_state() -> Dict:
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "python": {"version": version, "state": list(internal), "gauss_next": gauss_next}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: Dict) -> None:
    torch.set_rng_state(state["torch"])
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def export_weights(checkpoint: Path, out: Path, use_ema: bool = False) -> Dict:
    """Write just the model weights (timm key names) and metadata for transfer and evaluation:
    {'state_dict': ..., 'meta': {**model_meta(config), 'epoch', 'top1', 'ema', 'source'}}."""
    state = read_training_checkpoint(checkpoint)
    if use_ema and "model_ema" not in state:
        raise CheckpointError(f"{checkpoint}: no EMA weights in this checkpoint (trained without --model-ema)")
    weights = state["model_ema" if use_ema else "model"]
    meta = {**model_meta(state["config"]), "epoch": state["epoch"] + 1,
            "top1": state.get("metrics", {}).get("val_top1"), "ema": use_ema, "source": str(checkpoint)}
    exported = {"state_dict": weights, "meta": meta}
    if Path(out).suffix == ".safetensors":
        save_safetensors(weights, meta, Path(out))
    else:
        save_atomic(exported, Path(out))
    return exported


def save_safetensors(weights: Dict[str, torch.Tensor], meta: Dict, path: Path) -> None:
    """Weights as safetensors (what timm's pretrained_cfg_overlay=dict(file=...) reads), the metadata
    as JSON in the file's header; written atomically like every checkpoint."""
    from safetensors.torch import save_file

    with atomic_file(path) as tmp:
        save_file({key: value.contiguous() for key, value in weights.items()}, str(tmp),
                  metadata={"format": "pt", SAFETENSORS_META: json.dumps(meta)})


def read_safetensors(path: Path) -> Tuple[Dict[str, torch.Tensor], Dict]:
    """Weights and the suite's metadata of a safetensors file (``{'arch': None}`` for another tool's)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            weights = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as error:  # safetensors raises its own error types for damaged headers and data
        raise CheckpointError(f"{str(path)!r} is not a readable safetensors file: {str(error)[:200]}") from None
    meta = json.loads(metadata[SAFETENSORS_META]) if SAFETENSORS_META in metadata else {"arch": None}
    return weights, {**meta, "source": str(path)}


class CheckpointMismatchError(CheckpointError):
    """Converted weights and the target model disagree on names or shapes."""


def load_model_weights(path: Path) -> Tuple[Dict[str, torch.Tensor], Dict]:
    """Model weights and metadata from any checkpoint of ours: an export ({'state_dict', 'meta'}, or
    its .safetensors form), a training checkpoint ({'model', 'config', ...}) or a bare state dict of
    timm key names."""
    if Path(path).suffix == ".safetensors":
        if not Path(path).is_file():
            raise InputNotFoundError(f"checkpoint {str(path)!r} does not exist")
        return read_safetensors(Path(path))
    state = read_checkpoint(path)
    if isinstance(state, dict) and "state_dict" in state and "meta" in state:
        return dict(state["state_dict"]), dict(state["meta"])
    if isinstance(state, dict) and "model" in state and "config" in state:
        return dict(state["model"]), {**model_meta(state["config"]), "epoch": state["epoch"] + 1, "source": str(path)}
    if isinstance(state, dict) and len(state) == 1 and next(iter(state)) in ("model", "state_dict"):
        state = next(iter(state.values()))  # {'model': ...}, as the official DeiT checkpoints are saved
    if isinstance(state, dict) and state and all(isinstance(value, torch.Tensor) for value in state.values()):
        return dict(state), {"arch": None, "source": str(path)}
    raise CheckpointError(f"{path}: not a checkpoint of this suite (expected an export with 'state_dict' and "
                          f"'meta', a training checkpoint with 'model' and 'config', or a plain state dict)")


def check_state_dict(converted: Dict[str, torch.Tensor], expected: Dict[str, torch.Tensor], what: str,
                     resizable: Tuple[str, ...] = ()) -> None:
    """Every expected key present with its shape, nothing left over; one error listing every problem.
    Keys in ``resizable`` may differ in shape (position embeddings the target interpolates)."""
    missing = sorted(set(expected) - set(converted))
    unused = sorted(set(converted) - set(expected))
    shapes = sorted(f"{key}: {tuple(converted[key].shape)} vs {tuple(expected[key].shape)}"
                    for key in set(converted) & set(expected)
                    if converted[key].shape != expected[key].shape and key not in resizable)
    if missing or unused or shapes:
        lines = [f"{what}: the converted checkpoint does not fit the model"]
        for title, items in (("missing", missing), ("unused", unused), ("shape mismatch", shapes)):
            if items:
                lines.append(f"  {title} ({len(items)}): " + ", ".join(items[:20]) + (" ..." if len(items) > 20 else ""))
        raise CheckpointMismatchError("\n".join(lines))


def initialise_from(model: torch.nn.Module, path: Path) -> List[str]:
    """Load the weights of any checkpoint the suite reads (export, training checkpoint, .safetensors,
    a timm or official DeiT state dict) into ``model`` to fine-tune it. The classifier (the model's
    pretrained_cfg 'classifier') is re-initialised where the checkpoint has none or another class
    count; any other missing, unused or misshapen key is an error listing them. Returns the classifier
    keys left at their initialisation."""
    weights, _ = load_model_weights(Path(path))
    expected = model.state_dict()
    heads = getattr(model, "pretrained_cfg", {}).get("classifier", "head")
    heads = (heads,) if isinstance(heads, str) else tuple(heads)
    in_head = [key for key in expected if any(key == head or key.startswith(head + ".") for head in heads)]
    fresh = [key for key in in_head if key not in weights or weights[key].shape != expected[key].shape]
    kept = {key: value for key, value in weights.items() if key not in fresh}
    check_state_dict(kept, {key: value for key, value in expected.items() if key not in fresh},
                     f"--initial-checkpoint {path}")
    model.load_state_dict(kept, strict=False)
    return fresh
