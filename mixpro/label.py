"""Soft targets for mixed batches: smoothing, area mixing, attention lambda and PAL (paper Eq. 5, 7-9).

All functions take per-sample lambdas (B,) so one code path serves Mixup, CutMix, MaskMix and PAL.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

__all__ = [
    "smooth_one_hot",
    "mix_targets",
    "attention_lambda",
    "progressive_factor",
    "pal_lambda",
    "transmix_lambda",
    "soft_target_cross_entropy",
]


def smooth_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """One-hot targets with label smoothing: off = smoothing / C, on = 1 - smoothing + off (as timm)."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {smoothing}")
    off = smoothing / num_classes
    on = 1.0 - smoothing + off
    targets = torch.full((labels.shape[0], num_classes), off, device=labels.device, dtype=torch.float32)
    return targets.scatter_(1, labels.view(-1, 1).long(), on)


def mix_targets(y_a: torch.Tensor, y_b: torch.Tensor, lam: torch.Tensor, num_classes: int,
                smoothing: float = 0.0) -> torch.Tensor:
    """lam * onehot(y_a) + (1 - lam) * onehot(y_b), both smoothed; lam is (B,) or a scalar.

    Built as smoothing / C everywhere plus two scatter-adds, so no one-hot matrix is materialised.
    ``smoothing`` in [0, 1) is checked once, where a mixer is built, not at every batch.
    """
    batch = y_a.shape[0]
    weight_a = torch.as_tensor(lam, dtype=torch.float32, device=y_a.device).expand(batch).reshape(batch, 1)
    weight_a = weight_a * (1.0 - smoothing)
    targets = torch.full((batch, num_classes), smoothing / num_classes, device=y_a.device, dtype=torch.float32)
    targets = targets.scatter_add(1, y_a.view(-1, 1).long(), weight_a)
    return targets.scatter_add(1, y_b.view(-1, 1).long(), (1.0 - smoothing) - weight_a)


def attention_lambda(attn: torch.Tensor, token_mask: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """lam_attn = sum(A * M_tok) / sum(A) over patch tokens (paper Eq. 5), (B,).

    ``attn`` is the class-token attention to the N patch tokens (B, N) (cls column already dropped,
    so rows do not sum to one; the normalisation fixes that). ``token_mask`` (B, N) is 1 on x_a tokens.
    """
    if attn.shape != token_mask.shape:
        raise ValueError(
            f"attention {tuple(attn.shape)} and token mask {tuple(token_mask.shape)} must have the same (B, N) "
            f"shape: the mask must be built on the token grid of the attention's block"
        )
    attn = attn.float()
    return torch.linalg.vecdot(attn, token_mask.float()) / attn.sum(1).clamp_min(eps)


def progressive_factor(logits: torch.Tensor, area_targets: torch.Tensor, detach: bool = False) -> torch.Tensor:
    """alpha = cos(softmax(logits), area-mixed target) per sample (paper Eq. 8), in [0, 1]."""
    probs = logits.float().softmax(dim=1)
    alpha = F.cosine_similarity(probs, area_targets.float(), dim=1, eps=1e-12).clamp(0.0, 1.0)
    return alpha.detach() if detach else alpha


def pal_lambda(alpha: torch.Tensor, lam_attn: torch.Tensor, lam_area: torch.Tensor) -> torch.Tensor:
    """lam = alpha * lam_attn + (1 - alpha) * lam_area (paper Eq. 9)."""
    return alpha * lam_attn + (1.0 - alpha) * lam_area


def transmix_lambda(lam_attn: torch.Tensor, lam_area: torch.Tensor) -> torch.Tensor:
    """TransMix's label weight: the mean of the attention and the area lambda."""
    return 0.5 * (lam_attn + lam_area)


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                              reduction: Optional[str] = "mean") -> torch.Tensor:
    """Cross-entropy against (B, C) soft targets, in float32 (torch's cross-entropy with probability targets)."""
    reduction = "none" if reduction is None else reduction
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return F.cross_entropy(logits.float(), targets.float(), reduction=reduction)
