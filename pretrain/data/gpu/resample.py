"""PIL's antialiased resize of a box, batched over images of different sizes packed in one buffer, in
PIL's own integer arithmetic (22-bit weights, 8-bit result after each pass), so outputs match PIL's.
The passes run as Triton kernels on CUDA (:mod:`.kernels`) and in plain torch elsewhere (the references
the kernels are tested against)."""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch

from . import kernels
from .device import to_device, triton_available
from .kernels import AxisPass
from .plan import FILTER_SUPPORT

_PRECISION_BITS = 22


def _filter(x: torch.Tensor, interpolation: str) -> torch.Tensor:
    x = x.abs()
    if interpolation == "bilinear":
        return (1 - x).clamp(min=0)
    a = -0.5  # PIL's bicubic
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return torch.where(x < 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


def axis_taps(length: torch.Tensor, resized: torch.Tensor, positions: torch.Tensor, taps: int,
              interpolation: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """First source index and weights of output ``positions`` when ``length`` source pixels are resized to
    ``resized`` along one axis, computed as PIL computes them (the filter widens with the downscaling
    factor: antialiasing; taps stay inside the source).

    length, resized: (B,); positions (B, N). Returns first (B, N) int64 and weights (B, N, taps) as int32 in
    units of 2^-22, rounded as PIL rounds them."""
    dtype = torch.float64
    length, resized = length.to(dtype)[:, None], resized.to(dtype)[:, None]
    scale = length / resized  # tensor / tensor: a scalar divisor may become a multiplication by its reciprocal
    filter_scale = scale.clamp(min=1.0)
    support = FILTER_SUPPORT[interpolation] * filter_scale
    center = (positions.to(dtype) + 0.5) * scale
    first = torch.trunc(center - support + 0.5).clamp(min=0)
    end = torch.minimum(torch.trunc(center + support + 0.5), length)
    index = first[..., None] + torch.arange(taps, device=length.device, dtype=dtype)
    weights = _filter((index - center[..., None] + 0.5) / filter_scale[..., None], interpolation)
    weights = weights * (index < end[..., None])
    total = weights.sum(-1, keepdim=True)
    weights = weights / torch.where(total == 0, torch.ones_like(total), total) * (1 << _PRECISION_BITS)
    return first.long(), torch.trunc(weights + torch.where(weights < 0, -0.5, 0.5)).int()


def taps_needed(lengths: torch.Tensor, resized: torch.Tensor, interpolation: str) -> int:
    """Taps per output that cover the widest filter of the batch (host tensors in, host int out)."""
    support = FILTER_SUPPORT[interpolation] * max((lengths.double() / resized.double()).max().item(), 1.0)
    return int(math.ceil(support)) * 2 + 1


def _pass_reference(src: torch.Tensor, p: AxisPass) -> torch.Tensor:
    batch, out_size, taps = p.weights.shape
    line = torch.minimum(p.line0[:, None] + torch.arange(p.lines, device=src.device), p.line_max[:, None])
    start = (p.base[:, None, None] + torch.arange(3, device=src.device) * p.chan[:, None, None]
             + (line * p.line_stride[:, None])[:, :, None])  # (B, lines, 3)
    acc = torch.zeros(batch, p.lines, 3, out_size, device=src.device, dtype=torch.int64)
    for k in range(taps):
        tap = torch.minimum(p.first + k, p.tap_max[:, None]) * p.tap_stride  # (B, S)
        acc += src[start[..., None] + tap[:, None, None, :]].long() * p.weights[:, None, None, :, k].long()
    return ((acc + (1 << (_PRECISION_BITS - 1))) >> _PRECISION_BITS).clamp(0, 255).to(torch.uint8)

def _vertical_reference(rows_tmp: torch.Tensor, first: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Vertical pass, plain torch: out[b, c, y, x] = clip8(sum_k w[b, y, k] tmp[b, first[b, y] + k, c, x])."""
    batch, rows = rows_tmp.shape[:2]
    acc = torch.zeros(batch, weights.shape[1], 3, rows_tmp.shape[-1], device=rows_tmp.device, dtype=torch.int64)
    for k in range(weights.shape[2]):
        row = (first + k).clamp(max=rows - 1)
        picked = rows_tmp.gather(1, row[:, :, None, None].expand(-1, -1, 3, rows_tmp.shape[-1]))
        acc += picked.long() * weights[:, :, k, None, None].long()
    out = ((acc + (1 << (_PRECISION_BITS - 1))) >> _PRECISION_BITS).clamp(0, 255).to(torch.uint8)
    return out.permute(0, 2, 1, 3)

def resample_boxes(flat: torch.Tensor, sizes: torch.Tensor, regions: torch.Tensor, grids: torch.Tensor,
                   out_size: int, interpolation: str, use_triton: Optional[bool] = None) -> torch.Tensor:
    """For each image, PIL's antialiased resize of a region to a size, keeping an ``out_size`` square
    window of the result.

    flat: the images' (3, H, W) uint8 pixels concatenated, on the device. Host tensors, so tap counts and
    row spans are known without reading the device: sizes (B, 2) [H, W]; regions (B, 4) [top, left,
    height, width] (a random resized crop's box, or the whole image); grids (B, 4) [resized height,
    resized width, window top, window left]. Returns (B, 3, S, S) uint8."""
    device = flat.device
    batch = len(sizes)
    sizes, regions, grids = sizes.long(), regions.long(), grids.long()
    taps_y = taps_needed(regions[:, 2], grids[:, 0], interpolation)
    taps_x = taps_needed(regions[:, 3], grids[:, 1], interpolation)
    # Source rows the vertical pass reads: first tap of window row 0 to the last of row S - 1 (on the host).
    ends = grids[:, 2:3] + torch.tensor([0, out_size - 1])
    first_ends, weights_ends = axis_taps(regions[:, 2], grids[:, 0], ends, taps_y, interpolation)
    row_lo = first_ends[:, 0]
    row_hi = first_ends[:, 1] + (weights_ends[:, 1] != 0).long().cumsum(-1).argmax(-1)
    rows = int((row_hi - row_lo).max()) + 1
    offsets = torch.zeros(batch, dtype=torch.long)
    offsets[1:] = (3 * sizes[:, 0] * sizes[:, 1]).cumsum(0)[:-1]
    host = torch.cat([torch.stack([offsets, sizes[:, 0] * sizes[:, 1], sizes[:, 1], regions[:, 0] + row_lo,
                                   sizes[:, 0] - 1, regions[:, 1], sizes[:, 1] - 1, row_lo]), regions.T, grids.T])
    (offsets, plane, width, row0, last_row, col0, last_col, row_lo,
     _, _, region_h, region_w, resized_h, resized_w, window_top, window_left) = to_device(host, device)
    window = torch.arange(out_size, device=device)
    # both axes in one call (its ops are launches of small kernels: half the launches), at the larger tap count
    first, weights = axis_taps(torch.cat([region_w, region_h]), torch.cat([resized_w, resized_h]),
                               torch.cat([window_left, window_top])[:, None] + window, max(taps_x, taps_y),
                               interpolation)
    (first_x, first_y), (weights_x, weights_y) = first.split(batch), weights.split(batch)
    weights_x, weights_y = weights_x[..., :taps_x], weights_y[..., :taps_y]
    triton = triton_available(device) if use_triton is None else use_triton
    # Horizontal pass over the rows of the span -> (B, rows, 3, S); then vertical over it -> (B, 3, S, S).
    horizontal = (kernels.axis_pass if triton else _pass_reference)(
        flat, AxisPass(offsets, plane, width, row0, last_row, last_col, 1, rows, (col0[:, None] + first_x).contiguous(),
                       weights_x.contiguous()))
    return (kernels.vertical_pass if triton else _vertical_reference)(
        horizontal, (first_y - row_lo[:, None]).contiguous(), weights_y.contiguous())
