"""Mixing masks: MaskMix patch-aligned grid masks, token-level masks and CutMix boxes.

Convention used throughout the package: a mask value of 1 means "this pixel (token) comes from the
first image x_a", 0 means "from its partner x_b", i.e. ``mixed = M * x_a + (1 - M) * x_b`` (paper Eq. 7).
``lam_area`` is the fraction of kept x_a pixels, measured on the mask actually applied.

Everything here runs on the device of its inputs and never reads a tensor back to the host.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

__all__ = [
    "GridMask",
    "random_subset",
    "MaskMixGenerator",
    "beta_cdf",
    "check_mask_patch_size",
    "cutmix_box",
    "box_mask",
    "token_mask",
]


def _pair(value) -> Tuple[int, int]:
    if isinstance(value, int):
        return value, value
    height, width = value
    return int(height), int(width)


def check_mask_patch_size(mask_patch_size: int, patch_size: int, name: str = "patch_size") -> None:
    """MaskMix cells must tile whole tokens, so every token comes from exactly one image."""
    if patch_size <= 0:
        raise ValueError(f"{name} must be a positive number of pixels, got {patch_size}")
    if mask_patch_size <= 0 or mask_patch_size % patch_size != 0:
        raise ValueError(
            f"mask_patch_size={mask_patch_size} must be a positive multiple of {name}={patch_size} "
            f"so that every token of the model comes from one image only"
        )


def random_subset(rows: int, size: int, counts, device: torch.device | str = "cpu",
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """(rows, size) bool with ``counts`` (an int or a (rows, 1) tensor) uniformly random entries set
    per row. argsort of uniform scores is a uniformly random permutation, so its first ``counts``
    positions (rank < counts) are a uniformly random subset of that size."""
    ranks = torch.rand(rows, size, device=device, generator=generator).argsort(dim=1)
    return ranks < counts


def beta_cdf(x: torch.Tensor, beta: float, steps: int = 4096) -> torch.Tensor:
    """CDF of the symmetric Beta(beta, beta) distribution at ``x`` (float64, CPU).

    torch has no regularised incomplete beta function. With u = t**beta the integrand
    t**(beta-1) (1-t)**(beta-1) dt becomes (1/beta) (1 - u**(1/beta))**(beta-1) du, which is smooth
    on [0, 0.5**beta]; Simpson's rule there plus the symmetry F(1-x) = 1 - F(x) gives the CDF to better than 1e-6 for beta >= 0.5.
    """
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    x = torch.as_tensor(x, dtype=torch.float64).clamp(0.0, 1.0)
    lower = torch.minimum(x, 1.0 - x)
    upper_u = lower.pow(beta)
    # Simpson on [0, upper_u] for every x at once.
    n = steps + (steps % 2)
    frac = torch.linspace(0.0, 1.0, n + 1, dtype=torch.float64)
    u = upper_u.unsqueeze(-1) * frac
    integrand = (1.0 - u.pow(1.0 / beta)).pow(beta - 1.0) / beta
    weights = torch.ones(n + 1, dtype=torch.float64)
    weights[1:-1:2] = 4.0
    weights[2:-1:2] = 2.0
    integral = (integrand * weights).sum(-1) * upper_u / (3.0 * n)
    log_norm = 2.0 * math.lgamma(beta) - math.lgamma(2.0 * beta)
    half = integral / math.exp(log_norm)
    return torch.where(x <= 0.5, half, 1.0 - half)


@dataclass
class GridMask:
    """A batch of MaskMix masks.

    pixel: (B, 1, H, W) bool, True = pixel of x_a.
    cells: (B, gh, gw) bool, the cell grid before upsampling and cropping.
    lam_area: (B,) float, true fraction of x_a pixels in ``pixel``.
    """

    pixel: torch.Tensor
    cells: torch.Tensor
    lam_area: torch.Tensor
    mask_patch_size: int
    source: "MaskMixGenerator"

    def tokens(self, grid_size: Sequence[int] | int) -> torch.Tensor:
        """Token-level mask (B, h*w) float for a token grid whose patches tile the cells exactly."""
        index = self.source.token_index(_pair(grid_size), self.cells.device)
        return self.cells.flatten(1)[:, index].to(torch.float32)


class MaskMixGenerator:
    """Draws MaskMix grid masks (paper Sec. 3.2, Eq. 6).

    The image is divided into cells of ``mask_patch_size`` pixels; a ratio tau ~ Beta(beta, beta) is
    drawn and floor(S * tau) of the S cells are set to 1 (taken from x_a). When the image size is not a
    multiple of the cell size (224 px with 64 px cells) the grid is ceil'd (4x4 cells) and cropped to
    the image; lam_area counts the pixels actually kept, so cropped border cells weigh less.

    A handful of device kernels per batch: the cell of every pixel and token, and the pixel count of
    every cell, are tables computed once, so a mask is one random ranking plus two gathers.

    Args:
        image_size: (H, W) of the mixed images.
        mask_patch_size: cell size in pixels; must be a multiple of every ``patch_sizes`` entry.
        patch_sizes: token patch sizes of the model (16 for DeiT/16; 32 for PVT's class-token stage).
        beta: Beta distribution parameter of the masking ratio (paper: 1, i.e. uniform).
        per_sample_ratio: draw one tau per sample instead of one per batch. Default False, as the
            official code (one ratio per batch, cells drawn independently for every sample).
    """

    def __init__(
        self,
        image_size: Sequence[int] | int = 224,
        mask_patch_size: int = 64,
        patch_sizes: Sequence[int] | int = 16,
        beta: float = 1.0,
        per_sample_ratio: bool = False,
    ) -> None:
        self.image_size = _pair(image_size)
        if min(self.image_size) <= 0:
            raise ValueError(f"image_size must be positive, got {self.image_size}")
        patch_sizes = (patch_sizes,) if isinstance(patch_sizes, int) else tuple(patch_sizes)
        for patch_size in patch_sizes:
            check_mask_patch_size(mask_patch_size, patch_size)
        if not beta > 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        self.mask_patch_size = int(mask_patch_size)
        self.beta = float(beta)
        self.per_sample_ratio = bool(per_sample_ratio)
        height, width = self.image_size
        self.grid = (math.ceil(height / mask_patch_size), math.ceil(width / mask_patch_size))
        self.num_cells = self.grid[0] * self.grid[1]
        if self.num_cells < 2:  # one cell is all of x_a or all of x_b: nothing would ever be mixed
            raise ValueError(f"mask_patch_size={mask_patch_size} px makes a single MaskMix cell on {height}x{width} "
                             f"images, so nothing would be mixed: use cells smaller than the image (at least 2 cells)")
        # floor(S * tau) = k exactly when tau lies in [k/S, (k+1)/S): sampling k from these
        # probabilities is an exact draw of floor(S * tau) that needs no Beta sampler on the device.
        edges = beta_cdf(torch.arange(self.num_cells + 2, dtype=torch.float64) / self.num_cells, self.beta)
        count_cdf = (edges[1:] - edges[:-1]).clamp_min(0.0).cumsum(0)
        count_cdf = (count_cdf / count_cdf[-1]).to(torch.float32)
        pixel_cell = self._cell_of(torch.arange(height) // mask_patch_size, torch.arange(width) // mask_patch_size)
        cell_pixels = torch.bincount(pixel_cell, minlength=self.num_cells).to(torch.float32)
        self._tables = {"count_cdf": count_cdf, "pixel_cell": pixel_cell, "cell_pixels": cell_pixels}
        self._on_device: Dict[Tuple[str, str], torch.Tensor] = {}

    def _cell_of(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return (rows[:, None] * self.grid[1] + cols[None, :]).flatten()

    def _table(self, name: str, device: torch.device) -> torch.Tensor:
        key = (name, str(device))
        if key not in self._on_device:
            self._on_device[key] = self._tables[name].to(device)
        return self._on_device[key]

    def token_index(self, grid_size: Tuple[int, int], device: torch.device) -> torch.Tensor:
        """Cell of every token of an (h, w) grid covering the image; the grid must tile the cells."""
        key = f"tokens{grid_size}"
        if key not in self._tables:
            grid_h, grid_w = grid_size
            height, width = self.image_size
            if height % grid_h or width % grid_w or (height // grid_h) != (width // grid_w):
                raise ValueError(f"token grid {grid_size} does not tile the {height}x{width} image in square patches")
            check_mask_patch_size(self.mask_patch_size, height // grid_h)
            patch = height // grid_h
            self._tables[key] = self._cell_of(torch.arange(grid_h) * patch // self.mask_patch_size,
                                              torch.arange(grid_w) * patch // self.mask_patch_size)
        return self._table(key, device)

    def sample_counts(self, batch_size: int, device: torch.device, generator: Optional[torch.Generator] = None
                      ) -> torch.Tensor:
        """Number of masked cells per sample, (B, 1) int64: floor(S * tau), tau ~ Beta(beta, beta)."""
        draws = batch_size if self.per_sample_ratio else 1
        # Inverse-CDF draw (torch.multinomial validates its input with a host read).
        uniform = torch.rand(draws, device=device, generator=generator)
        counts = torch.searchsorted(self._table("count_cdf", device), uniform, right=True)
        return counts.clamp_max(self.num_cells).view(-1, 1).expand(batch_size, 1)

    def __call__(self, batch_size: int, device: torch.device | str = "cpu",
                 generator: Optional[torch.Generator] = None, counts: Optional[torch.Tensor] = None) -> GridMask:
        device = torch.device(device)
        if generator is not None and generator.device.type != device.type:
            raise ValueError(f"generator is on {generator.device}, masks are drawn on {device}")
        if counts is None:
            counts = self.sample_counts(batch_size, device, generator)
        cells = random_subset(batch_size, self.num_cells, counts.to(device), device, generator)
        height, width = self.image_size
        pixel = cells[:, self._table("pixel_cell", device)].view(batch_size, 1, height, width)
        # Integer pixel counts summed in float32 are exact (no TF32 matmul), so lam_area is exactly
        # the mean of the pixel mask.
        kept = (cells.to(torch.float32) * self._table("cell_pixels", device)).sum(dim=1)
        lam_area = kept / float(height * width)
        return GridMask(pixel=pixel, cells=cells.view(batch_size, *self.grid), lam_area=lam_area,
                        mask_patch_size=self.mask_patch_size, source=self)


def token_mask(pixel_mask: torch.Tensor, grid_size: Sequence[int] | int, mode: str = "nearest") -> torch.Tensor:
    """Downsample a (B, 1, H, W) pixel mask (bool or float) to a token grid, returned as (B, h*w) float.

    ``nearest`` is the nearest-neighbour downsampling of TransMix (paper Eq. 5); ``area`` gives the
    fraction of each token taken from x_a. Both agree on MaskMix masks, whose cells tile tokens.
    """
    grid_h, grid_w = _pair(grid_size)
    if pixel_mask.dim() != 4 or pixel_mask.shape[1] != 1:
        raise ValueError(f"pixel_mask must have shape (B, 1, H, W), got {tuple(pixel_mask.shape)}")
    pixel_mask = pixel_mask.to(torch.float32)
    if mode == "nearest":
        small = F.interpolate(pixel_mask, size=(grid_h, grid_w), mode="nearest")
    elif mode == "area":
        small = F.adaptive_avg_pool2d(pixel_mask, (grid_h, grid_w))
    else:
        raise ValueError(f"mode must be 'nearest' or 'area', got {mode!r}")
    return small.flatten(1)


def cutmix_box(image_size: Sequence[int] | int, lam: float, rng: random.Random,
               minmax: Optional[Tuple[float, float]] = None) -> Tuple[Tuple[int, int, int, int], float]:
    """One CutMix box for a batch, as timm's ``cutmix_bbox_and_lam`` with ``correct_lam=True``.

    Without ``minmax`` the box has sides sqrt(1 - lam) of the image, a uniform centre and is clipped
    to the image; with ``minmax`` its sides are uniform fractions in that range. Returns the box
    (y0, y1, x0, x1) and the area-corrected lam (fraction of x_a pixels left outside the box).
    Drawn on the host from ``rng`` (one box per batch), so nothing waits on the device.
    """
    height, width = _pair(image_size)
    if minmax is not None:
        low, high = minmax
        cut_h = rng.randint(int(height * low), int(height * high))
        cut_w = rng.randint(int(width * low), int(width * high))
        y0 = rng.randint(0, height - cut_h)
        x0 = rng.randint(0, width - cut_w)
        y1, x1 = y0 + cut_h, x0 + cut_w
    else:
        ratio = math.sqrt(1.0 - lam)
        cut_h, cut_w = int(height * ratio), int(width * ratio)
        cy, cx = rng.randrange(height), rng.randrange(width)
        y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
        x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    corrected = 1.0 - (y1 - y0) * (x1 - x0) / float(height * width)
    return (y0, y1, x0, x1), corrected


def box_mask(image_size: Sequence[int] | int, box: Tuple[int, int, int, int], batch_size: int,
             device: torch.device | str = "cpu") -> torch.Tensor:
    """(B, 1, H, W) bool mask that is False inside ``box`` (pasted from x_b) and True elsewhere."""
    height, width = _pair(image_size)
    y0, y1, x0, x1 = box
    mask = torch.ones(1, 1, height, width, device=device, dtype=torch.bool)
    mask[..., y0:y1, x0:x1] = False
    return mask.expand(batch_size, 1, height, width)
