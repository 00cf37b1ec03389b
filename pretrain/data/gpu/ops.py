"""RandAugment / colour-jitter ops on (N, 3, S, S) float images holding integers in [0, 255], one
argument per image, each as PIL defines it (8-bit results after every op): the plain-torch path, and
the references the fused Triton layer (:mod:`.kernels`) is tested against; and PIL's affine maps."""
from __future__ import annotations

from typing import List

import numpy as np
import torch
import torch.nn.functional as F

from .plan import Op

def _grey(x: torch.Tensor) -> torch.Tensor:
    """PIL's RGB -> L: (R 19595 + G 38470 + B 7471 + 2^15) >> 16 (exact in float32)."""
    return torch.floor((x[:, 0] * 19595 + x[:, 1] * 38470 + x[:, 2] * 7471 + 32768) / 65536)[:, None]


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's Image.blend: degenerate + factor (x - degenerate), truncated to 8 bits."""
    return torch.floor((degenerate + factor.view(-1, 1, 1, 1) * (x - degenerate)).clamp(0, 255))


def ramp(count: int, device: torch.device) -> torch.Tensor:
    """(count, 3, 1, 256) image of the 256 levels: a pointwise op applied to it is its lookup table."""
    return torch.arange(256, device=device, dtype=torch.float32).expand(count, 3, 1, 256)


def _apply_lut(x: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    return lut.gather(2, x.reshape(x.shape[0], 3, -1).long()).view_as(x)


def auto_contrast_lut(x: torch.Tensor) -> torch.Tensor:
    """PIL's autocontrast table per channel: (n, 3, 256), stretched in float64 as Python does."""
    flat = x.reshape(x.shape[0], 3, -1).double()
    lo, hi = flat.amin(-1, keepdim=True), flat.amax(-1, keepdim=True)
    ramp = torch.arange(256, device=x.device, dtype=torch.float64)
    scale = torch.full_like(hi, 255.0) / (hi - lo).clamp(min=1)  # correctly rounded, as Python's 255.0 / n
    stretched = torch.trunc(ramp * scale + (-lo * scale)).clamp(0, 255)
    return torch.where(hi > lo, stretched, ramp).float()


def equalize_lut(x: torch.Tensor) -> torch.Tensor:
    """PIL's equalize table per channel: (n, 3, 256)."""
    channels = x.reshape(x.shape[0] * 3, -1).long()
    hist = torch.zeros(channels.shape[0], 256, device=x.device, dtype=torch.float32)
    hist.scatter_add_(1, channels, torch.ones_like(channels, dtype=torch.float32))
    last = hist.gather(1, channels.amax(1, keepdim=True))  # count of the highest value present
    step = torch.floor((hist.sum(1, keepdim=True) - last) / 255)
    before = hist.cumsum(1) - hist
    lut = torch.floor((torch.floor(step / 2) + before) / step.clamp(min=1)).clamp(max=255)
    identity = torch.arange(256, device=x.device, dtype=torch.float32).expand_as(lut)
    keep = (step == 0) | ((hist > 0).sum(1, keepdim=True) <= 1)
    return torch.where(keep, identity, lut).view(x.shape[0], 3, 256)


def auto_contrast(x: torch.Tensor, _arg: torch.Tensor) -> torch.Tensor:
    return _apply_lut(x, auto_contrast_lut(x))


def equalize(x: torch.Tensor, _arg: torch.Tensor) -> torch.Tensor:
    return _apply_lut(x, equalize_lut(x))


def invert(x: torch.Tensor, _arg: torch.Tensor) -> torch.Tensor:
    return 255 - x


def posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    step = torch.pow(2.0, (8 - bits).clamp(min=0)).view(-1, 1, 1, 1)
    return torch.floor(x / step) * step


def solarize(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    return torch.where(x < threshold.view(-1, 1, 1, 1), x, 255 - x)


def solarize_add(x: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
    return torch.where(x < 128, (x + add.view(-1, 1, 1, 1)).clamp(max=255), x)


def color(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(_grey(x).expand_as(x), x, factor)


def grey_mean(x: torch.Tensor) -> torch.Tensor:
    """PIL's int(mean of L + 0.5) per image, (N,): the integer sum divided in float64 as ImageStat does."""
    grey = _grey(x)
    return torch.floor(grey.sum((1, 2, 3), dtype=torch.float64) / grey[0].numel() + 0.5).float()


def contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(grey_mean(x).view(-1, 1, 1, 1).expand_as(x), x, factor)


def brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(torch.zeros_like(x), x, factor)


_SMOOTH = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13


def sharpness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with PIL's SMOOTH filter, whose one-pixel border keeps the original values (the smoothed
    value sum / 13 of integers is never within float error of a rounding tie)."""
    kernel = _SMOOTH.to(x.device, x.dtype).expand(3, 1, 3, 3)
    smooth = torch.floor(F.conv2d(x, kernel, groups=3) + 0.5).clamp(0, 255)
    degenerate = x.clone()
    degenerate[:, :, 1:-1, 1:-1] = smooth
    return _blend(degenerate, x, factor)


POINTWISE = {Op.AUTO_CONTRAST: auto_contrast, Op.EQUALIZE: equalize, Op.INVERT: invert, Op.POSTERIZE: posterize,
             Op.SOLARIZE: solarize, Op.SOLARIZE_ADD: solarize_add, Op.COLOR: color, Op.CONTRAST: contrast,
             Op.BRIGHTNESS: brightness, Op.SHARPNESS: sharpness}


def affine_matrices(ops: torch.Tensor, args: torch.Tensor, size: int) -> torch.Tensor:
    """PIL's inverse maps (output -> input, pixel centres at +0.5) of rotate / shear / translate: (N, 2, 3)
    float64 on the host. Made with numpy: the per-batch tables are small, and numpy's calls cost
    microseconds where torch's host ops cost tens (in the augment thread, beside training, that is GIL time)."""
    ops, args = ops.cpu().numpy(), args.cpu().numpy().astype(np.float64)
    angle = -np.deg2rad(args)
    cos, sin = np.cos(angle), np.sin(angle)
    center = size / 2.0
    one, zero = np.ones_like(args), np.zeros_like(args)
    # Image.rotate: the map about the centre, offsets summed in PIL's order (it also rounds cos / sin to
    # 15 decimals, which moves a rare pixel by one level)
    rotate = np.stack([cos, sin, (cos * -center + sin * -center) + center,
                       -sin, cos, (-sin * -center + cos * -center) + center], -1)
    rows = {Op.ROTATE: rotate,
            Op.SHEAR_X: np.stack([one, args, zero, zero, one, zero], -1),
            Op.SHEAR_Y: np.stack([one, zero, zero, args, one, zero], -1),
            Op.TRANSLATE_X: np.stack([one, zero, args, zero, one, zero], -1),
            Op.TRANSLATE_Y: np.stack([one, zero, zero, zero, one, args], -1)}
    matrix = np.zeros((len(args), 6))
    for op, value in rows.items():
        matrix = np.where((ops == op)[:, None], value, matrix)
    return torch.from_numpy(matrix).view(-1, 2, 3)


def _interpolate(values: List[torch.Tensor], d: torch.Tensor, interpolation: str) -> torch.Tensor:
    """PIL's transform filters in its own operation order (its bicubic is the a = -1 cubic, unlike its
    resize's), so float64 results truncate to the same 8-bit values."""
    if interpolation == "bilinear":
        a, b = values
        return a + (b - a) * d
    v1, v2, v3, v4 = values
    p2 = -v1 + v3
    p3 = 2 * (v1 - v2) + v3 - v4
    p4 = -v1 + v2 - v3 + v4
    return v2 + d * (p2 + d * (p3 + d * p4))


def geometric(x: torch.Tensor, ops: torch.Tensor, args: torch.Tensor, fill: torch.Tensor,
              interpolation: str) -> torch.Tensor:
    """PIL's affine transform: each output pixel centre maps to a source point; points outside the image
    take the fill colour, taps past the border repeat the edge, and the result is truncated to 8 bits."""
    n, _, size, _ = x.shape
    matrix = affine_matrices(ops, args, size).to(x.device)
    centers = torch.arange(size, device=x.device, dtype=torch.float64) + 0.5
    grid_y, grid_x = torch.meshgrid(centers, centers, indexing="ij")
    points = torch.stack([grid_x, grid_y], -1).view(1, -1, 2)
    source = (matrix[:, None, :, 0] * points[..., 0:1] + matrix[:, None, :, 1] * points[..., 1:2]
              + matrix[:, None, :, 2])  # (n, S*S, 2): a x + b y + c, d x + e y + f, as PIL sums them
    inside = ((source >= 0) & (source < size)).all(-1)[:, None]
    position = source - 0.5
    base = torch.floor(position)
    fraction = (position - base)[:, None]
    offsets = (0, 1) if interpolation == "bilinear" else (-1, 0, 1, 2)
    columns = [(base[..., 0] + o).clamp(0, size - 1).long() for o in offsets]
    flat = x.reshape(n, 3, size * size).double()
    lines = []
    for offset in offsets:
        row = (base[..., 1] + offset).clamp(0, size - 1).long() * size
        taps = [flat.gather(2, (row + column)[:, None].expand(n, 3, -1)) for column in columns]
        lines.append(_interpolate(taps, fraction[..., 0], interpolation))
    value = torch.trunc(_interpolate(lines, fraction[..., 1], interpolation).clamp(0, 255)).float()
    return torch.where(inside, value, fill.view(1, 3, 1)).view_as(x)
