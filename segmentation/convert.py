"""DeiT / ViT weights with timm key names -> mmseg's ``VisionTransformer``.

mmseg loads backbones with ``strict=False`` and would silently drop what does not fit (its ViT has
no patch-embedding bias unless ``patch_bias=True``, for one). Here every key is mapped explicitly
and the result is checked against the target model: anything missing, unused or misshapen is an
error that lists it.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch

from pretrain.checkpoint import CheckpointMismatchError, check_state_dict, load_model_weights
from transfer.convert import build_backbone, convert_file

# timm name (regex) -> mmseg name; the classifier head is not part of the backbone.
_RULES = (
    (r"^cls_token$", "cls_token"),
    (r"^pos_embed$", "pos_embed"),
    (r"^patch_embed\.proj\.(weight|bias)$", r"patch_embed.projection.\1"),
    (r"^blocks\.(\d+)\.norm1\.(weight|bias)$", r"layers.\1.ln1.\2"),
    (r"^blocks\.(\d+)\.attn\.qkv\.weight$", r"layers.\1.attn.attn.in_proj_weight"),
    (r"^blocks\.(\d+)\.attn\.qkv\.bias$", r"layers.\1.attn.attn.in_proj_bias"),
    (r"^blocks\.(\d+)\.attn\.proj\.(weight|bias)$", r"layers.\1.attn.attn.out_proj.\2"),
    (r"^blocks\.(\d+)\.norm2\.(weight|bias)$", r"layers.\1.ln2.\2"),
    (r"^blocks\.(\d+)\.mlp\.fc1\.(weight|bias)$", r"layers.\1.ffn.layers.0.0.\2"),
    (r"^blocks\.(\d+)\.mlp\.fc2\.(weight|bias)$", r"layers.\1.ffn.layers.1.\2"),
    (r"^norm\.(weight|bias)$", r"ln1.\1"),
)
_DROPPED = re.compile(r"^(head|fc_norm|head_drop)\.")


def timm_vit_to_mmseg(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename a timm DeiT/ViT state dict to mmseg's VisionTransformer names (no shape changes)."""
    if "dist_token" in state_dict or "reg_token" in state_dict:
        raise CheckpointMismatchError("distilled / register-token ViTs have extra tokens mmseg's VisionTransformer "
                                      "does not model; export a plain DeiT/ViT")
    if "patch_embed.proj.weight" not in state_dict or not any(key.startswith("blocks.") for key in state_dict):
        raise CheckpointMismatchError(
            "not a timm DeiT/ViT checkpoint (no patch_embed.proj / blocks.* keys); "
            f"first keys: {sorted(state_dict)[:6]}")
    converted, unmatched = {}, []
    for key, value in state_dict.items():
        if _DROPPED.match(key):
            continue
        for pattern, target in _RULES:
            if re.match(pattern, key):
                converted[re.sub(pattern, target, key)] = value
                break
        else:
            unmatched.append(key)
    if unmatched:
        raise CheckpointMismatchError(f"keys with no mmseg VisionTransformer counterpart: {unmatched[:20]}")
    return converted


def load_for_mmseg(path: Path, backbone: torch.nn.Module) -> Tuple[Dict[str, torch.Tensor], Dict]:
    """Our checkpoint (export, training checkpoint or timm state dict) converted for ``backbone`` and
    checked against it strictly; pos_embed may differ in grid size (mmseg interpolates it)."""
    weights, meta = load_model_weights(path)
    arch = meta.get("arch")
    if arch and not re.match(r"^(deit|vit)_", arch):
        raise CheckpointMismatchError(f"{path} holds a {arch} model; the segmentation configs need a DeiT/ViT")
    converted = timm_vit_to_mmseg(weights)
    check_state_dict(converted, backbone.state_dict(), f"{path} -> mmseg VisionTransformer",
                     resizable=("pos_embed",))
    return converted, meta


def convert_for_mmseg(checkpoint: str, out: str, config: Optional[str] = None) -> Dict:
    """Our checkpoint -> a file a stock mmseg VisionTransformer loads (init_cfg Pretrained); with
    ``config``, checked against that config's backbone first."""
    from mmseg.registry import MODELS

    backbone = build_backbone(config, MODELS) if config else None
    return convert_file(checkpoint, out, timm_vit_to_mmseg, "mmseg", backbone, f"{checkpoint} -> {config}",
                        resizable=("pos_embed",))
