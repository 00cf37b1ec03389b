"""Mixing masks: MaskMix grid masks (random or BEiT-style block cells), token-level masks, CutMix boxes,
and the token shuffles of the paper's ablations.

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
    "MASK_STRATEGIES",
    "random_subset",
    "random_blocks",
    "MaskMixGenerator",
    "beta_cdf",
    "check_mask_patch_size",
    "cutmix_box",
    "snap_box",
    "box_mask",
    "token_mask",
    "shuffle_tokens",
]

MASK_STRATEGIES = ("random", "block")
# BEiT's block shape: aspect ratio log-uniform in [BLOCK_MIN_ASPECT, 1 / BLOCK_MIN_ASPECT].
BLOCK_MIN_ASPECT = 0.3
# Block proposals evaluated at once per sample and round, and at most this many rounds per batch: a fixed
# amount of device work with no host read; with 32 x 32 fewer than 0.3 % of 14x14 masks need the final top-up.
BLOCK_PROPOSALS = 32
BLOCK_ROUNDS = 32


def _pair(value) -> Tuple[int, int]:
    if isinstance(value, int):
        return value, value
    height, width = value
    return int(height), int(width)


def check_mask_patch_size(mask_patch_size: int, patch_size: int, name: str = "patch_size",
                          subpatch_cells: bool = False) -> None:
    """MaskMix cells must tile whole tokens, so every token comes from exactly one image; with
    ``subpatch_cells`` (paper Table 8 C) they must instead tile every token, several cells per token."""
    if patch_size <= 0:
        raise ValueError(f"{name} must be a positive number of pixels, got {patch_size}")
    if subpatch_cells:
        if mask_patch_size <= 0 or mask_patch_size >= patch_size or patch_size % mask_patch_size != 0:
            raise ValueError(f"mask_patch_size={mask_patch_size} must be a divisor of {name}={patch_size} smaller "
                             f"than it with subpatch_cells=True (cells inside each token)")
        return
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


def random_blocks(rows: int, grid: Tuple[int, int], counts, device: torch.device | str = "cpu",
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """(rows, h*w) bool with exactly ``counts`` entries per row set, as a union of rectangles on the (h, w) grid.

    Blockwise masking of BEiT (Bao et al. 2021, ``MaskingGenerator._mask``) with ``min_num_patches=1`` as
    TokenMix (Liu et al. 2022) uses it, the source of the paper's Table 7 "block" numbers: a proposal has an
    area uniform in [1, r] (r = entries still to set), an aspect ratio log-uniform in [0.3, 1/0.3], sides
    round(sqrt(area * aspect)) x round(sqrt(area / aspect)) that must be smaller than the grid, a uniform
    position, and is accepted when it sets between 1 and r new entries. Rejected proposals leave the mask
    unchanged, so the first acceptable of a round's proposals is BEiT's next block. BEiT gives up after 10
    rejected proposals and leaves the mask short of its target; here proposals continue for a fixed number
    of rounds and a row still short afterwards (rare) gets its last entries uniformly among the free ones.
    """
    height, width = grid
    size = height * width
    counts = torch.as_tensor(counts, device=device).expand(rows, 1)
    chosen = torch.zeros(rows, size, dtype=torch.bool, device=device)
    row_index = torch.arange(height, device=device).view(1, 1, height, 1)
    col_index = torch.arange(width, device=device).view(1, 1, 1, width)
    log_low, log_high = math.log(BLOCK_MIN_ASPECT), math.log(1.0 / BLOCK_MIN_ASPECT)
    every_row = torch.arange(rows, device=device)
    for _ in range(min(BLOCK_ROUNDS, size)):  # an accepted block sets at least one entry
        remaining = counts - chosen.sum(dim=1, keepdim=True)  # (rows, 1)
        draws = torch.rand(rows, BLOCK_PROPOSALS, 4, device=device, generator=generator)
        area = 1.0 + draws[..., 0] * (remaining - 1)
        aspect = torch.exp(log_low + draws[..., 1] * (log_high - log_low))
        block_h = torch.round(torch.sqrt(area * aspect))
        block_w = torch.round(torch.sqrt(area / aspect))
        top = torch.floor(draws[..., 2] * (height - block_h + 1)).unsqueeze(-1).unsqueeze(-1)
        left = torch.floor(draws[..., 3] * (width - block_w + 1)).unsqueeze(-1).unsqueeze(-1)
        block = ((row_index >= top) & (row_index < top + block_h[..., None, None])
                 & (col_index >= left) & (col_index < left + block_w[..., None, None])).flatten(2)
        new = (block & ~chosen.unsqueeze(1)).sum(dim=2)
        acceptable = (block_h < height) & (block_w < width) & (new > 0) & (new <= remaining)
        first = acceptable.to(torch.uint8).argmax(dim=1)  # argmax returns the first maximal index
        chosen |= block[every_row, first] & acceptable.any(dim=1, keepdim=True)
    # Top-up: free entries in random order come first, and the first ``short`` of them are set.
    short = counts - chosen.sum(dim=1, keepdim=True)
    order = (torch.rand(rows, size, device=device, generator=generator) + chosen).argsort(dim=1)
    top_up = torch.arange(size, device=device).expand(rows, size) < short
    return chosen | torch.zeros_like(chosen).scatter(1, order, top_up)


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
        """Token-level mask (B, h*w) float: 0/1 when the token patches tile the cells; with cells offset
        from the patch grid or smaller than a patch (paper Table 8 B, C), the fraction of every token's
        pixels taken from x_a, so the attention label weighs each token by what it shows of x_a."""
        grid_size = _pair(grid_size)
        if self.source.cells_tile_tokens(grid_size):
            index = self.source.token_index(grid_size, self.cells.device)
            return self.cells.flatten(1)[:, index].to(torch.float32)
        return token_mask(self.pixel, grid_size, mode="area")


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
        mask_patch_size: cell size in pixels; must be a multiple of every ``patch_sizes`` entry
            (a divisor with ``subpatch_cells``).
        patch_sizes: token patch sizes of the model (16 for DeiT/16; 32 for PVT's class-token stage).
        beta: Beta distribution parameter of the masking ratio (paper: 1, i.e. uniform).
        per_sample_ratio: draw one tau per sample instead of one per batch. Default False, as the
            official code (one ratio per batch, cells drawn independently for every sample).
        strategy: which cells are set: 'random' (a uniform subset: MaskMix) or 'block' (BEiT's blockwise
            rectangles of cells, see :func:`random_blocks`; paper Table 7).
        grid_offset: cell borders lie at grid_offset + k * mask_patch_size pixels on both axes; 0 aligns
            them with the patches, half a patch misaligns them (paper Table 8 B).
        subpatch_cells: cells smaller than a patch instead, a divisor of every patch size (paper Table 8 C).
    """

    def __init__(
        self,
        image_size: Sequence[int] | int = 224,
        mask_patch_size: int = 64,
        patch_sizes: Sequence[int] | int = 16,
        beta: float = 1.0,
        per_sample_ratio: bool = False,
        strategy: str = "random",
        grid_offset: int = 0,
        subpatch_cells: bool = False,
    ) -> None:
        self.image_size = _pair(image_size)
        if min(self.image_size) <= 0:
            raise ValueError(f"image_size must be positive, got {self.image_size}")
        patch_sizes = (patch_sizes,) if isinstance(patch_sizes, int) else tuple(patch_sizes)
        for patch_size in patch_sizes:
            check_mask_patch_size(mask_patch_size, patch_size, subpatch_cells=subpatch_cells)
        if not beta > 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        if strategy not in MASK_STRATEGIES:
            raise ValueError(f"strategy must be one of {MASK_STRATEGIES}, got {strategy!r}")
        if not 0 <= grid_offset < mask_patch_size:
            raise ValueError(f"grid_offset={grid_offset} must be in [0, mask_patch_size={mask_patch_size}) pixels")
        self.mask_patch_size = int(mask_patch_size)
        self.beta = float(beta)
        self.per_sample_ratio = bool(per_sample_ratio)
        self.strategy = strategy
        self.grid_offset = int(grid_offset)
        # Tokens may show both images only when asked for; otherwise a grid that cuts tokens is an error.
        self.mixed_tokens = bool(subpatch_cells) or self.grid_offset != 0
        # Pixel y lies in cell row (y + shift) // mask_patch_size: the first row is cropped to grid_offset px.
        self.shift = (self.mask_patch_size - self.grid_offset) % self.mask_patch_size
        height, width = self.image_size
        self.grid = (math.ceil((height + self.shift) / mask_patch_size),
                     math.ceil((width + self.shift) / mask_patch_size))
        self.num_cells = self.grid[0] * self.grid[1]
        if self.num_cells < 2:  # one cell is all of x_a or all of x_b: nothing would ever be mixed
            raise ValueError(f"mask_patch_size={mask_patch_size} px makes a single MaskMix cell on {height}x{width} "
                             f"images, so nothing would be mixed: use cells smaller than the image (at least 2 cells)")
        # floor(S * tau) = k exactly when tau lies in [k/S, (k+1)/S): sampling k from these
        # probabilities is an exact draw of floor(S * tau) that needs no Beta sampler on the device.
        edges = beta_cdf(torch.arange(self.num_cells + 2, dtype=torch.float64) / self.num_cells, self.beta)
        count_cdf = (edges[1:] - edges[:-1]).clamp_min(0.0).cumsum(0)
        count_cdf = (count_cdf / count_cdf[-1]).to(torch.float32)
        pixel_cell = self._cell_of((torch.arange(height) + self.shift) // mask_patch_size,
                                   (torch.arange(width) + self.shift) // mask_patch_size)
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

    def _patch_of(self, grid_size: Tuple[int, int]) -> int:
        grid_h, grid_w = grid_size
        height, width = self.image_size
        if height % grid_h or width % grid_w or (height // grid_h) != (width // grid_w):
            raise ValueError(f"token grid {grid_size} does not tile the {height}x{width} image in square patches")
        return height // grid_h

    def cells_tile_tokens(self, grid_size: Tuple[int, int]) -> bool:
        """Whether every token of an (h, w) grid lies inside one cell; an error unless the generator was
        built to let tokens straddle cells (``grid_offset`` or ``subpatch_cells``)."""
        patch = self._patch_of(grid_size)
        tiles = self.mask_patch_size % patch == 0 and self.shift % patch == 0
        if not tiles and not self.mixed_tokens:
            check_mask_patch_size(self.mask_patch_size, patch)
        return tiles

    def token_index(self, grid_size: Tuple[int, int], device: torch.device) -> torch.Tensor:
        """Cell of every token of an (h, w) grid covering the image; the grid must tile the cells."""
        key = f"tokens{grid_size}"
        if key not in self._tables:
            patch = self._patch_of(grid_size)
            if not self.cells_tile_tokens(grid_size):
                raise ValueError(f"the {patch} px tokens straddle cells (mask_patch_size={self.mask_patch_size}, "
                                 f"grid_offset={self.grid_offset}): they have no single cell")
            grid_h, grid_w = grid_size
            self._tables[key] = self._cell_of((torch.arange(grid_h) * patch + self.shift) // self.mask_patch_size,
                                              (torch.arange(grid_w) * patch + self.shift) // self.mask_patch_size)
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
        if self.strategy == "block":
            cells = random_blocks(batch_size, self.grid, counts.to(device), device, generator)
        else:
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


def snap_box(image_size: Sequence[int] | int, box: Tuple[int, int, int, int], step: int
             ) -> Tuple[Tuple[int, int, int, int], float]:
    """Round every edge of a CutMix box (y0, y1, x0, x1) to the nearest multiple of ``step`` pixels (halves
    up), so the box covers whole patches (paper Table 8 A). Returns the snapped box and the fraction of x_a
    pixels left outside it."""
    height, width = _pair(image_size)
    y0, y1, x0, x1 = ((edge + step // 2) // step * step for edge in box)
    y0, y1, x0, x1 = min(y0, height), min(y1, height), min(x0, width), min(x1, width)
    return (y0, y1, x0, x1), 1.0 - (y1 - y0) * (x1 - x0) / float(height * width)


def box_mask(image_size: Sequence[int] | int, box: Tuple[int, int, int, int], batch_size: int,
             device: torch.device | str = "cpu") -> torch.Tensor:
    """(B, 1, H, W) bool mask that is False inside ``box`` (pasted from x_b) and True elsewhere."""
    height, width = _pair(image_size)
    y0, y1, x0, x1 = box
    mask = torch.ones(1, 1, height, width, device=device, dtype=torch.bool)
    mask[..., y0:y1, x0:x1] = False
    return mask.expand(batch_size, 1, height, width)


def shuffle_tokens(images: torch.Tensor, token_mask: torch.Tensor, patch_size: int, pasted: bool, canvas: bool,
                   generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Randomly permute the ``patch_size`` px tokens of mixed images within their group (paper Table 9).

    With ``pasted`` the tokens taken from x_b (``token_mask`` 0) change places among themselves, with
    ``canvas`` those of x_a (1). Each group keeps its set of positions, so the mask and the area labels
    stay true; only the geometry of the images is destroyed. ``token_mask`` (B, N) must be 0/1.
    """
    batch, channels, height, width = images.shape
    grid_h, grid_w = height // patch_size, width // patch_size
    count = grid_h * grid_w
    from_b = token_mask < 0.5
    moves = (from_b & pasted) | (~from_b & canvas)
    # Sort keys: the group (0 or 2) plus a position in [0, 1), either the token's own (it stays) or a
    # random one (it moves). Position j of a group in index order receives token j of the group in key order.
    group = from_b.to(torch.float32) * 2.0
    position = torch.arange(count, device=images.device, dtype=torch.float32) / count
    key = torch.where(moves, torch.rand(batch, count, device=images.device, generator=generator), position)
    in_place = (group + position).argsort(dim=1)
    source = torch.empty_like(in_place).scatter_(1, in_place, (group + key).argsort(dim=1))
    tokens = images.reshape(batch, channels, grid_h, patch_size, grid_w, patch_size).permute(0, 2, 4, 1, 3, 5)
    tokens = tokens.reshape(batch, count, -1)
    tokens = tokens.gather(1, source.unsqueeze(-1).expand_as(tokens))
    tokens = tokens.reshape(batch, grid_h, grid_w, channels, patch_size, patch_size).permute(0, 3, 1, 4, 2, 5)
    return tokens.reshape(batch, channels, height, width)
