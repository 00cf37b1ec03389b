"""Our PVT v1 weights (original PVT key names) -> mmdet's ``PyramidVisionTransformer``.

mmdet's own loader converts the original layout with ``pvt_convert`` (merging q and kv into one
in-projection, dropping the class token, the final norm and the head) and then loads with
``strict=False``. We reuse ``pvt_convert`` but check its result against the model strictly, and drop
the class token's position embedding by structure rather than by mmdet's test for exactly 50
tokens (which only holds at 224 px).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch
from mmdet.models.backbones.pvt import pvt_convert

from pretrain.checkpoint import CheckpointMismatchError, check_state_dict, load_model_weights
from transfer.convert import build_backbone, convert_file


def pvt_v1_to_mmdet(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename our PVT v1 state dict to mmdet PyramidVisionTransformer names."""
    if "pos_embed4" not in state_dict or "block1.0.attn.q.weight" not in state_dict:
        raise CheckpointMismatchError("not a PVT v1 checkpoint (no pos_embed4 / block1.0.attn.q keys); "
                                      f"first keys: {sorted(state_dict)[:6]}")
    weights = dict(state_dict)
    if "cls_token" in weights:
        # Stage 4 carries the class token first; the detector has no class token.
        weights["pos_embed4"] = weights["pos_embed4"][:, 1:]
    return dict(pvt_convert(weights))


def load_for_mmdet(path: Path, backbone: torch.nn.Module) -> Tuple[Dict[str, torch.Tensor], Dict]:
    """Our checkpoint converted for ``backbone`` and checked against it strictly."""
    weights, meta = load_model_weights(path)
    arch = meta.get("arch")
    if arch and not re.match(r"^pvt_(tiny|small|medium|large)$", arch):
        raise CheckpointMismatchError(f"{path} holds a {arch} model; the detection configs need PVT v1 (pvt_*)")
    converted = pvt_v1_to_mmdet(weights)
    check_state_dict(converted, backbone.state_dict(), f"{path} -> mmdet PyramidVisionTransformer")
    return converted, meta


def convert_for_mmdet(checkpoint: str, out: str, config: Optional[str] = None) -> Dict:
    """Our PVT v1 checkpoint -> a file a stock mmdet PyramidVisionTransformer loads with
    ``convert_weights=False``; with ``config``, checked against that config's backbone first."""
    from mmdet.registry import MODELS

    backbone = build_backbone(config, MODELS) if config else None
    return convert_file(checkpoint, out, pvt_v1_to_mmdet, "mmdet", backbone, f"{checkpoint} -> {config}")
