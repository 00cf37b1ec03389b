"""Patch dropping (Naseer et al., "Intriguing properties of vision transformers"), on the device.

Images are [0, 1] tensors; dropped square patches (16x16 in the reference) are set to zero there,
before normalisation, so a dropped patch becomes -mean/std for the model. Every level and mode is produced from the same
decoded batch (:func:`occlusion_variants`), so a sweep reads the data once.

- Random: ``k * N // 10`` of the N patches for k = 0..9; one index set per batch (as the reference)
  or one per image, with a seed and any number of repeats.
- Salient / non-salient: patches (the saliency map's cells) ranked by a saliency map (DINO ViT-S/16
  attention, head 1, or the evaluated model's own class attention); the salient set at lambda holds the
  top patches whose ascending cumulative share of the attention mass exceeds 1 - lambda (the reference
  rule, :func:`salient_set`). Salient dropping zeroes that set, non-salient dropping keeps only it
  (larger lambda, less dropped); the two are complementary.
"""
from __future__ import annotations

from typing import Iterator, Optional, Sequence, Tuple

import torch

from mixpro.mask import random_subset

RANDOM_LEVELS = tuple(range(10))  # k: drop k * N // 10 patches
SALIENCY_LEVELS = tuple(round(0.1 * i, 1) for i in range(1, 11))  # lambda


def patch_pixels(patch_mask: torch.Tensor, grid: Tuple[int, int], patch_size: int) -> torch.Tensor:
    """(B, N) patch mask -> (B, 1, H, W) pixel mask."""
    batch = patch_mask.shape[0]
    cells = patch_mask.view(batch, 1, grid[0], grid[1])
    return cells.repeat_interleave(patch_size, dim=2).repeat_interleave(patch_size, dim=3)


def drop_patches(images: torch.Tensor, drop: torch.Tensor, patch_size: int = 16) -> torch.Tensor:
    """Zero the patches where ``drop`` (B, N) is True; every other pixel is left bit-identical."""
    height, width = images.shape[-2:]
    if height % patch_size or width % patch_size:
        raise ValueError(f"image size {height}x{width} is not a multiple of patch_size={patch_size}")
    grid = (height // patch_size, width // patch_size)
    if drop.shape[1] != grid[0] * grid[1]:
        raise ValueError(f"drop mask has {drop.shape[1]} patches, the image has {grid[0] * grid[1]}")
    keep = ~patch_pixels(drop, grid, patch_size)
    return images * keep.to(images.dtype)


def random_drop(batch: int, num_patches: int, count: int, generator: Optional[torch.Generator] = None,
                per_image: bool = False, device: torch.device | str = "cpu") -> torch.Tensor:
    """(B, N) bool: ``count`` random patches dropped, the same set for the batch or one per image."""
    if not 0 <= count <= num_patches:
        raise ValueError(f"count must be in [0, {num_patches}], got {count}")
    rows = batch if per_image else 1
    chosen = random_subset(rows, num_patches, count, generator.device if generator else device, generator)
    return chosen.to(device).expand(batch, num_patches)


def salient_set(saliency: torch.Tensor, lam: float) -> torch.Tensor:
    """(B, N) bool: the salient set at ``lam``, by the reference rule (Naseer et al., evaluate.py).

    Patches are sorted by ascending saliency, their values divided by the row's sum, and a patch is
    salient when the cumulative share up to and including it exceeds ``1 - lam``, all in float32 as the
    reference computes it: at ``lam = 1`` every patch of non-zero saliency is salient. Tied patches get
    the same cumulative shares whatever their order, so the count matches the reference's; which tied
    patch is taken is made deterministic here (the reference's sort is not stable): among equal values,
    the earlier patch in raster order counts as the more salient."""
    if not 0.0 < lam <= 1.0:
        raise ValueError(f"lambda must be in (0, 1], got {lam}")
    # A stable descending sort, reversed, is ascending with ties in reverse raster order.
    descending, order = saliency.float().sort(dim=1, descending=True, stable=True)
    ascending, order = descending.flip(1), order.flip(1)
    share = ascending / ascending.sum(dim=1, keepdim=True)
    chosen_sorted = share.cumsum(dim=1) > (1 - lam)
    return torch.zeros_like(chosen_sorted).scatter(1, order, chosen_sorted)


def occlusion_variants(images: torch.Tensor, saliency: Optional[torch.Tensor] = None, patch_size: int = 16,
                       generator: Optional[torch.Generator] = None, per_image: bool = False, repeats: int = 1,
                       random_levels: Sequence[int] = RANDOM_LEVELS,
                       saliency_levels: Sequence[float] = SALIENCY_LEVELS,
                       saliency_patch_size: Optional[int] = None,
                       ) -> Iterator[Tuple[str, float, int, torch.Tensor]]:
    """All occluded versions of one decoded batch: (mode, level, repeat, images). Modes: 'random'
    (``patch_size`` patches; level = fraction dropped, k / 10), and with a saliency map 'salient' and
    'non_salient' (the map's cells, ``saliency_patch_size`` px, default ``patch_size``; level = lambda)."""
    batch = images.shape[0]
    num_patches = (images.shape[-2] // patch_size) * (images.shape[-1] // patch_size)
    for repeat in range(repeats):
        for k in random_levels:
            drop = random_drop(batch, num_patches, k * num_patches // 10, generator, per_image, images.device)
            yield "random", k / 10, repeat, drop_patches(images, drop, patch_size)
    if saliency is None:
        return
    cell = saliency_patch_size or patch_size
    for lam in saliency_levels:
        chosen = salient_set(saliency, lam)
        yield "salient", lam, 0, drop_patches(images, chosen, cell)
        yield "non_salient", lam, 0, drop_patches(images, ~chosen, cell)
