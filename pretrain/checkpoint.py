"""Checkpoints: atomic writes, weights_only-loadable contents, auto-resume, export for transfer.

A training checkpoint holds: model, optimizer, scheduler, scaler, (EMA), epoch (last completed),
step, best top-1, the RNG states of every rank, every rank's mixer state and the resolved config,
all as tensors, numbers, strings, lists and dicts, so ``torch.load(weights_only=True)`` reads it.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch

LAST = "checkpoint_last.pth"
BEST = "checkpoint_best.pth"


def epoch_name(epoch: int) -> str:
    return f"checkpoint_epoch{epoch:04d}.pth"


def save_atomic(obj: Dict, path: Path) -> None:
    """Write to a temporary file in the same folder, flush it to disk, then rename over ``path``:
    a crash leaves either the old file or the new one, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_checkpoint(path: Path) -> Dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    return torch.load(path, map_location="cpu", weights_only=True)


def resolve_resume(resume: str, output_dir: Path) -> Optional[Path]:
    """'' -> None; 'auto' -> OUTPUT_DIR/checkpoint_last.pth if present (else a fresh start); else the
    given path, which must exist."""
    if not resume:
        return None
    if resume == "auto":
        last = Path(output_dir) / LAST
        return last if last.is_file() else None
    path = Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"--resume {resume!r}: no such checkpoint")
    return path


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
    {'state_dict': ..., 'meta': {'arch', 'recipe', 'epoch', 'top1', 'num_classes', 'input_size', ...}}."""
    state = load_checkpoint(checkpoint)
    if use_ema and "model_ema" not in state:
        raise ValueError(f"{checkpoint}: no EMA weights in this checkpoint (trained without --model-ema)")
    config = state["config"]
    weights = state["model_ema" if use_ema else "model"]
    meta = {
        "arch": config["model"],
        "model_kwargs": config.get("model_kwargs", {}),
        "recipe": config.get("recipe", ""),
        "epoch": state["epoch"] + 1,
        "top1": state.get("metrics", {}).get("val_top1"),
        "num_classes": config["num_classes"],
        "input_size": config["input_size"],
        "ema": use_ema,
        "source": str(checkpoint),
    }
    exported = {"state_dict": weights, "meta": meta}
    save_atomic(exported, Path(out))
    return exported


class CheckpointMismatchError(ValueError):
    """Converted weights and the target model disagree on names or shapes."""


def load_model_weights(path: Path) -> Tuple[Dict[str, torch.Tensor], Dict]:
    """Model weights and metadata from any checkpoint of ours: an export ({'state_dict', 'meta'}),
    a training checkpoint ({'model', 'config', ...}) or a bare state dict of timm key names."""
    state = load_checkpoint(path)
    if "state_dict" in state and "meta" in state:
        return dict(state["state_dict"]), dict(state["meta"])
    if "model" in state and "config" in state:
        config = state["config"]
        return dict(state["model"]), {"arch": config["model"], "recipe": config.get("recipe", ""),
                                      "epoch": state["epoch"] + 1, "source": str(path)}
    if all(isinstance(value, torch.Tensor) for value in state.values()):
        return dict(state), {"arch": None, "source": str(path)}
    raise CheckpointMismatchError(f"{path}: not a checkpoint of this suite (expected an export with 'state_dict' "
                                  f"and 'meta', a training checkpoint with 'model', or a plain state dict)")


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
