"""Checkpoints: atomic writes, weights_only-loadable contents, auto-resume, export for transfer, and
the one model loader every consumer (robustness report, pictures, tools) uses (:func:`load_model`).

A training checkpoint holds: model, optimizer, scheduler, scaler, (EMA), epoch (last completed),
step, best top-1, the RNG states of every rank, every rank's mixer state and the resolved config,
all as tensors, numbers, strings, lists and dicts, so ``torch.load(weights_only=True)`` reads it.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Tuple

import timm
import torch
from timm.data import resolve_data_config

import pretrain.models  # noqa: F401  (PVT v1 in timm's registry)

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


@dataclass
class LoadedModel:
    name: str
    model: torch.nn.Module
    mean: torch.Tensor  # (1, 3, 1, 1) on the device
    std: torch.Tensor
    meta: Dict = field(default_factory=dict)
    input_size: int = 224

    @classmethod
    def wrap(cls, name: str, model: torch.nn.Module, device: torch.device, meta: Optional[Dict] = None
             ) -> "LoadedModel":
        """Put ``model`` on ``device`` in eval mode with the normalisation of its timm data config."""
        config = resolve_data_config({}, model=model)
        model.to(device).eval()
        mean = torch.tensor(config["mean"], device=device).view(1, 3, 1, 1)
        std = torch.tensor(config["std"], device=device).view(1, 3, 1, 1)
        meta = meta or {}
        return cls(name, model, mean, std, meta, int(meta.get("input_size") or config["input_size"][-1]))

    def logits(self, images01: torch.Tensor, amp: bool) -> torch.Tensor:
        with torch.autocast(images01.device.type, dtype=torch.bfloat16, enabled=amp):
            return self.model((images01 - self.mean) / self.std).float()


def load_model(spec: str, device: torch.device) -> LoadedModel:
    """``spec``: one of our checkpoints (export or training checkpoint), or ``TIMM_NAME=WEIGHTS_FILE``
    for a timm model with local weights (e.g. a published DeiT-S)."""
    name, sep, weights_file = spec.partition("=")
    if sep:
        if not Path(weights_file).is_file():
            raise FileNotFoundError(f"--checkpoint {spec}: weights file {weights_file} does not exist")
        model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=weights_file))
        meta = {"arch": name, "source": weights_file, "recipe": "timm"}
        label = name
    else:
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(f"--checkpoint {spec} does not exist")
        weights, meta = load_model_weights(path)
        if not meta.get("arch"):
            raise ValueError(f"{spec} has no architecture in its metadata: export it with tools/export_checkpoint.py "
                             f"or pass TIMM_NAME={spec}")
        model = timm.create_model(meta["arch"], num_classes=meta.get("num_classes", 1000),
                                  img_size=meta.get("input_size", 224), **meta.get("model_kwargs", {}))
        model.load_state_dict(weights, strict=True)
        label = path.stem
    return LoadedModel.wrap(label, model, device, meta)
