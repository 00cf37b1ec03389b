"""A trained model ready for evaluation, rebuilt from any checkpoint of the suite (export or training
checkpoint) or from timm weights: the one loader every consumer (robustness report, pictures,
benchmarks) uses, with the model's normalisation and the evaluation transform it was validated with."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import timm
import torch
from timm.data import resolve_data_config

import pretrain.models  # noqa: F401  (PVT v1 in timm's registry)

from .checkpoint import check_state_dict, load_model_weights, read_checkpoint, read_safetensors
from .data.transforms import eval_transform
from .errors import CheckpointError, InputNotFoundError

# The robustness reference code (hendrycks, Naseer et al.) resizes bilinearly to 256 and crops 224.
REFERENCE_EVAL = {"interpolation": "bilinear", "crop_pct": 0.875}


def eval_resize(protocol: str, interpolation: str, crop_pct: float) -> Tuple[str, float]:
    """(interpolation, crop pct) of an evaluation: the model's own (``checkpoint``) or the reference's."""
    if protocol == "reference":
        return REFERENCE_EVAL["interpolation"], REFERENCE_EVAL["crop_pct"]
    return interpolation, crop_pct


@dataclass
class LoadedModel:
    name: str
    model: torch.nn.Module
    mean: torch.Tensor  # (1, 3, 1, 1) on the device
    std: torch.Tensor
    meta: Dict = field(default_factory=dict)
    input_size: int = 224
    interpolation: str = "bicubic"  # of the evaluation resize the model was validated with
    crop_pct: float = 0.875

    @classmethod
    def wrap(cls, name: str, model: torch.nn.Module, device: torch.device, meta: Optional[Dict] = None
             ) -> "LoadedModel":
        """Put ``model`` on ``device`` in eval mode with the normalisation of its timm data config;
        input size, interpolation and crop pct come from ``meta`` (the training config) where given."""
        config = resolve_data_config({}, model=model)
        model.to(device).eval()
        mean = torch.tensor(config["mean"], device=device).view(1, 3, 1, 1)
        std = torch.tensor(config["std"], device=device).view(1, 3, 1, 1)
        meta = meta or {}
        return cls(name, model, mean, std, meta, int(meta.get("input_size") or config["input_size"][-1]),
                   meta.get("interpolation") or config["interpolation"], float(meta.get("crop_pct") or config["crop_pct"]))

    def eval_transform(self, protocol: str = "checkpoint") -> Callable:
        """[0, 1] images at the model's input size: ``checkpoint`` resizes as the model's own validation
        did (its interpolation and crop pct), ``reference`` as the robustness reference code."""
        interpolation, crop_pct = self.eval_resize(protocol)
        return eval_transform(self.input_size, interpolation, crop_pct)

    def eval_resize(self, protocol: str) -> Tuple[str, float]:
        return eval_resize(protocol, self.interpolation, self.crop_pct)

    def logits(self, images01: torch.Tensor, amp: bool) -> torch.Tensor:
        with torch.autocast(images01.device.type, dtype=torch.bfloat16, enabled=amp):
            return self.model((images01 - self.mean) / self.std).float()


def read_model_spec(spec: str) -> Dict:
    """The metadata of ``spec`` without building the model (checks a spec before any work):
    ``TIMM_NAME=WEIGHTS_FILE`` or one of our checkpoints, whose weights are read and kept."""
    name, sep, weights_file = spec.partition("=")
    if sep:
        if not timm.is_model(name):
            raise CheckpointError(f"--checkpoint {spec}: {name!r} is not a timm model name")
        if not Path(weights_file).is_file():
            raise InputNotFoundError(f"--checkpoint {spec}: weights file {weights_file!r} does not exist")
        if Path(weights_file).suffix == ".safetensors":  # one clear error for an unreadable file, before any work
            read_safetensors(Path(weights_file))
        else:
            read_checkpoint(Path(weights_file))
        return {"arch": name, "source": weights_file, "recipe": "timm"}
    weights, meta = load_model_weights(Path(spec))
    if not meta.get("arch"):
        raise CheckpointError(f"{spec} is a bare state dict with no architecture: export it with "
                              f"tools/export_checkpoint.py or pass TIMM_NAME={spec}")
    return {**meta, "weights": weights}


def load_model(spec: str, device: torch.device, meta: Optional[Dict] = None) -> LoadedModel:
    """``spec``: one of our checkpoints (export or training checkpoint), or ``TIMM_NAME=WEIGHTS_FILE``
    for a timm model with local weights (e.g. a published DeiT-S). ``meta``: :func:`read_model_spec`'s
    answer when the caller has it already."""
    meta = dict(meta or read_model_spec(spec))
    weights = meta.pop("weights", None)
    if weights is None:
        name, _, weights_file = spec.partition("=")
        try:
            model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=weights_file))
        except (RuntimeError, KeyError, ValueError) as error:  # timm's loader: keys or shapes that do not fit
            raise CheckpointError(f"--checkpoint {spec}: timm cannot load {weights_file} into {name}: "
                                  f"{str(error).splitlines()[0][:300]}") from None
        return LoadedModel.wrap(name, model, device, meta)
    model = timm.create_model(meta["arch"], num_classes=meta.get("num_classes", 1000),
                              img_size=meta.get("input_size", 224), **meta.get("model_kwargs", {}))
    check_state_dict(weights, model.state_dict(), f"{spec} ({meta['arch']})")
    model.load_state_dict(weights, strict=True)
    return LoadedModel.wrap(Path(spec).stem, model, device, meta)
