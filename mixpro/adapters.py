"""Attention adapters of timm's model families (see :func:`mixpro.attention.register_attention_adapter`).

Each reads the class-token attention of the model's last attention over the patch tokens, from what
the block computes anyway (a forward hook), so fused attention stays on:

- VisionTransformer (DeiT, ViT): the last block's self-attention, class-token row;
- CaiT and XCiT: the last class-attention block (``ClassAttn``, CaiT's; XCiT uses it too), whose only
  query is the class token; XCiT's cross-covariance blocks have no token-to-token attention to read.

timm is imported only when a model is matched: the library itself needs torch alone.
"""
from __future__ import annotations

from typing import Callable, Tuple

import torch
from torch import nn

from .attention import AttentionSite, cls_attention_row, register_attention_adapter


def _instance_of(module_name: str, class_name: str):
    def matches(model: nn.Module) -> bool:
        try:
            module = __import__(f"timm.models.{module_name}", fromlist=[class_name])
        except ImportError:  # timm is optional for the library
            return False
        return isinstance(model, getattr(module, class_name))
    return matches


def _square(size, what: str) -> int:
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if height != width:
        raise TypeError(f"square {what} expected, got {height}x{width}")
    return int(height)


def qkv_site(qkv: nn.Module, num_heads: int, scale: float, prefix: int, grid_size: Tuple[int, int],
             patch_size: int, attention: nn.Module, q_norm: Callable = nn.Identity(),
             k_norm: Callable = nn.Identity()) -> AttentionSite:
    """An attention whose fused projection ``qkv`` maps every token to [q, k, v] and whose first token
    is the class token: its row is read off the projection's output (``prefix`` tokens come first)."""

    def compute(inputs: tuple, qkv_out: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = qkv_out.shape
        qkv_heads = qkv_out.view(batch, tokens, 3, num_heads, -1)
        with torch.autocast(qkv_out.device.type, enabled=False):
            return cls_attention_row(q_norm(qkv_heads[:, 0, 0].float()), k_norm(qkv_heads[:, :, 1].float()), scale,
                                     prefix)

    return AttentionSite(module=qkv, compute=compute, grid_size=grid_size, patch_size=patch_size, attention=attention)


def _timm_vit_site(model: nn.Module) -> AttentionSite:
    if getattr(model, "cls_token", None) is None:
        raise TypeError("ClsAttention needs a class token; this VisionTransformer has class_token=False")
    attn = model.blocks[-1].attn
    if not hasattr(attn, "qkv"):
        raise TypeError(f"last block attention {type(attn).__name__} has no fused qkv projection")
    return qkv_site(attn.qkv, attn.num_heads, attn.scale, model.num_prefix_tokens,
                    tuple(model.patch_embed.grid_size), _square(model.patch_embed.patch_size, "patches"), attn,
                    attn.q_norm, attn.k_norm)


def class_attn_site(attn: nn.Module, grid_size: Tuple[int, int], patch_size: int) -> AttentionSite:
    """A ``ClassAttn`` block: its input is [class token, patch tokens]; the hook on its key projection
    sees that input and the keys, and the class query is recomputed (one (B, C) x (C, C) product,
    under the forward's own autocast, as the block computed it)."""
    num_heads, scale = attn.num_heads, attn.scale

    def compute(inputs: tuple, keys: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = keys.shape
        q_cls = attn.q(inputs[0][:, 0])
        with torch.autocast(keys.device.type, enabled=False):
            return cls_attention_row(q_cls.float().view(batch, num_heads, dim // num_heads),
                                     keys.float().view(batch, tokens, num_heads, dim // num_heads), scale, 1)

    return AttentionSite(module=attn.k, compute=compute, grid_size=grid_size, patch_size=patch_size,
                         attention=attn)


def _cait_site(model: nn.Module) -> AttentionSite:
    return class_attn_site(model.blocks_token_only[-1].attn, tuple(model.patch_embed.grid_size),
                           _square(model.patch_embed.patch_size, "patches"))


def _xcit_site(model: nn.Module) -> AttentionSite:
    if not model.cls_attn_blocks:
        raise TypeError("this XCiT has no class-attention blocks (cls_attn_layers=0): no class-token attention")
    patch = _square(model.patch_embed.patch_size, "patches")
    side = _square(model.patch_embed.img_size, "images") // patch
    return class_attn_site(model.cls_attn_blocks[-1].attn, (side, side), patch)


register_attention_adapter(_instance_of("vision_transformer", "VisionTransformer"), _timm_vit_site,
                           "timm VisionTransformer (DeiT, ViT)")
register_attention_adapter(_instance_of("cait", "Cait"), _cait_site, "timm CaiT")
register_attention_adapter(_instance_of("xcit", "Xcit"), _xcit_site, "timm XCiT")
