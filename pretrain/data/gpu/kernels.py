"""The GPU data path's Triton kernels: the two resampling passes, the pixel-dependent tables of an
augmentation layer, and the fused layer itself. Each is compiled on first use, once per process
(``functools.cache``); Triton is imported only then, so CPU-only installs never need it. Op ids come
from :class:`.plan.Op` as compile-time constants, not as numbers agreed by convention."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from .plan import BLEND_OPS, GEOMETRIC, TABLE_OPS, Op


@dataclass
class AxisPass:
    """The horizontal resampling pass over packed uint8 images: for image b, channel c, line i and output x,

        out[b, i, c, x] = clip8(sum_k w[b, x, k] src[base_b + c chan_b + min(line0_b + i, line_max_b) line_stride_b
                                                     + min(first[b, x] + k, tap_max_b) tap_stride])

    with PIL's rounding; ``lines`` lines per image (the rows the vertical pass reads)."""

    base: torch.Tensor
    chan: torch.Tensor
    line_stride: torch.Tensor
    line0: torch.Tensor
    line_max: torch.Tensor
    tap_max: torch.Tensor
    tap_stride: int
    lines: int
    first: torch.Tensor
    weights: torch.Tensor


def axis_pass(src: torch.Tensor, p: AxisPass) -> torch.Tensor:
    """The horizontal resampling pass (:class:`AxisPass`) as one Triton kernel: taps are read
    straight from the packed images, accumulated in int32 as PIL does, and no (B, lines, 3, S, taps) index
    tensor is ever built. A program covers ``LINES`` lines of one channel, so each tap's weights are loaded
    once for all of them."""
    batch, out_size, taps = p.weights.shape
    out = torch.empty(batch, p.lines, 3, out_size, device=src.device, dtype=torch.uint8)
    block, lines_per_program = 256, 8
    grid = (batch * 3 * ((p.lines + lines_per_program - 1) // lines_per_program), (out_size + block - 1) // block)
    _build_axis_pass()[grid](src, out, p.base, p.chan, p.line_stride, p.line0, p.line_max, p.tap_max, p.first,
                             p.weights.transpose(1, 2).contiguous(), p.tap_stride, p.lines, out_size, taps,
                             LINES=lines_per_program, BLOCK=block)
    return out


@functools.cache
def _build_axis_pass():
    import triton
    import triton.language as tl

    @triton.jit
    def axis_pass(src, out, base, chan, line_stride, line0, line_max, tap_max, first, weights, tap_stride, lines,
                  out_size, taps, LINES: tl.constexpr, BLOCK: tl.constexpr):
        program = tl.program_id(0)
        blocks = (lines + LINES - 1) // LINES
        channel = program % 3
        i = ((program // 3) % blocks) * LINES + tl.arange(0, LINES)
        b = (program // (3 * blocks)).to(tl.int64)  # image offsets of large batches pass 2^31
        line_ok = i < lines
        xs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        inside = xs < out_size
        line = tl.minimum(tl.load(line0 + b) + i, tl.load(line_max + b))
        start = tl.load(base + b) + channel * tl.load(chan + b) + line * tl.load(line_stride + b)
        last = tl.load(tap_max + b)
        tap0 = tl.load(first + b * out_size + xs, mask=inside, other=0)
        acc = tl.zeros([LINES, BLOCK], dtype=tl.int32)
        for k in range(taps):
            w = tl.load(weights + (b * taps + k) * out_size + xs, mask=inside, other=0)
            tap = tl.minimum(tap0 + k, last) * tap_stride
            mask = line_ok[:, None] & (inside & (w != 0))[None, :]
            value = tl.load(src + start[:, None] + tap[None, :], mask=mask, other=0)
            acc += w[None, :] * value.to(tl.int32)
        result = tl.minimum(tl.maximum((acc + (1 << 21)) >> 22, 0), 255)
        target = out + ((b * lines + i[:, None]) * 3 + channel) * out_size + xs[None, :]
        tl.store(target, result.to(tl.uint8), mask=line_ok[:, None] & inside[None, :])

    return axis_pass


def vertical_pass(rows_tmp: torch.Tensor, first: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The vertical pass with a program per output row: its lanes run along x, so every tap is one
    contiguous read of a row of the horizontal pass."""
    batch, rows, _, width = rows_tmp.shape
    out_rows, taps = weights.shape[1:]
    out = torch.empty(batch, 3, out_rows, width, device=rows_tmp.device, dtype=torch.uint8)
    block = 256
    grid = (batch * 3 * out_rows, (width + block - 1) // block)
    _build_vertical_pass()[grid](rows_tmp, out, first, weights, rows, out_rows, width, taps, BLOCK=block)
    return out


@functools.cache
def _build_vertical_pass():
    import triton
    import triton.language as tl

    @triton.jit
    def vertical_pass(src, out, first, weights, rows, out_rows, width, taps, BLOCK: tl.constexpr):
        program = tl.program_id(0)
        y = program % out_rows
        channel = (program // out_rows) % 3
        b = (program // (3 * out_rows)).to(tl.int64)
        xs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        inside = xs < width
        row0 = tl.load(first + b * out_rows + y)
        acc = tl.zeros([BLOCK], dtype=tl.int32)
        for k in range(taps):
            w = tl.load(weights + (b * out_rows + y) * taps + k)
            row = tl.minimum(row0 + k, rows - 1)
            value = tl.load(src + ((b * rows + row) * 3 + channel) * width + xs, mask=inside & (w != 0), other=0)
            acc += w * value.to(tl.int32)
        result = tl.minimum(tl.maximum((acc + (1 << 21)) >> 22, 0), 255)
        tl.store(out + ((b * 3 + channel) * out_rows + y) * width + xs, result.to(tl.uint8), mask=inside)

    return vertical_pass


# The layer kernel's branches: op id ranges and the ops with branches of their own.
_LAYER_OPS = dict(FIRST_TABLE=int(min(TABLE_OPS)), LAST_TABLE=int(max(TABLE_OPS)), FIRST_BLEND=int(min(BLEND_OPS)),
                  LAST_BLEND=int(max(BLEND_OPS)), COLOR=int(Op.COLOR), CONTRAST=int(Op.CONTRAST),
                  SHARPNESS=int(Op.SHARPNESS), FIRST_GEOMETRIC=int(min(GEOMETRIC)))
assert list(TABLE_OPS) + list(BLEND_OPS) + sorted(GEOMETRIC) == list(Op), "the kernel's op ranges must be contiguous"


def augment_layer(x: torch.Tensor, ops: torch.Tensor, factors: torch.Tensor, means: torch.Tensor, luts: torch.Tensor,
                  matrices: torch.Tensor, fill: torch.Tensor, interpolation: str) -> torch.Tensor:
    """One RandAugment / colour-jitter layer for the whole uint8 batch in one kernel: each image's op
    picks its branch (a 256-entry table, a blend, or PIL's affine sampling). Products and sums are
    rounded one at a time (no fused multiply-add), as PIL's C code computes them."""
    batch, _, size, _ = x.shape
    out = torch.empty_like(x)
    block = max(32, 1 << (size - 1).bit_length())
    _build_layer()[(batch * 3 * size,)](x, out, ops, factors, means, luts, matrices, fill, size, **_LAYER_OPS,
                                        BICUBIC=interpolation == "bicubic", BLOCK=block)
    return out


def pixel_tables(x: torch.Tensor, ops: torch.Tensor, luts: torch.Tensor, means: torch.Tensor) -> None:
    """Writes the pixel-dependent inputs of a layer in one kernel, a program per image: autocontrast and
    equalize tables (into ``luts``, (N, 3, 256) uint8) and contrast means (into ``means``), each for the
    images whose op needs it, with the integer arithmetic of :func:`.ops.auto_contrast_lut`,
    :func:`.ops.equalize_lut` and :func:`.ops.grey_mean`."""
    batch, _, size, _ = x.shape
    _build_pixel_tables()[(batch,)](x, ops, luts, means, size * size, AUTO_CONTRAST=int(Op.AUTO_CONTRAST),
                                  EQUALIZE=int(Op.EQUALIZE), CONTRAST=int(Op.CONTRAST), BLOCK=1024)


@functools.cache
def _build_pixel_tables():
    import triton
    import triton.language as tl
    from triton.language.extra import libdevice

    @triton.jit
    def pixel_tables(src, ops, luts, means, plane, AUTO_CONTRAST: tl.constexpr, EQUALIZE: tl.constexpr,
                     CONTRAST: tl.constexpr, BLOCK: tl.constexpr):
        b = tl.program_id(0).to(tl.int64)
        op = tl.load(ops + b)
        image = src + b * 3 * plane
        levels = tl.arange(0, 256)
        lanes = tl.arange(0, BLOCK)
        if op == CONTRAST:
            total = tl.zeros([BLOCK], dtype=tl.int64)
            for start in range(0, plane, BLOCK):
                inside = start + lanes < plane
                red = tl.load(image + start + lanes, mask=inside, other=0).to(tl.int32)
                green = tl.load(image + plane + start + lanes, mask=inside, other=0).to(tl.int32)
                blue = tl.load(image + 2 * plane + start + lanes, mask=inside, other=0).to(tl.int32)
                grey = (red * 19595 + green * 38470 + blue * 7471 + 32768) >> 16
                total += tl.where(inside, grey, 0).to(tl.int64)
            mean = libdevice.div_rn(tl.sum(total, axis=0).to(tl.float64), plane.to(tl.float64))
            tl.store(means + b, tl.floor(mean + 0.5).to(tl.float32))
        if (op == AUTO_CONTRAST) | (op == EQUALIZE):
            padding = (plane + BLOCK - 1) // BLOCK * BLOCK - plane  # masked lanes counted as level 0
            for channel in tl.static_range(3):
                hist = tl.zeros([256], dtype=tl.int32)
                low = tl.full([BLOCK], 255, dtype=tl.int32)
                high = tl.zeros([BLOCK], dtype=tl.int32)
                for start in range(0, plane, BLOCK):
                    inside = start + lanes < plane
                    value = tl.load(image + channel * plane + start + lanes, mask=inside, other=0).to(tl.int32)
                    hist += tl.histogram(value, 256)
                    low = tl.minimum(low, tl.where(inside, value, 255))
                    high = tl.maximum(high, value)
                hist -= tl.where(levels == 0, padding, 0)
                if op == AUTO_CONTRAST:
                    lo = tl.min(low, axis=0).to(tl.float64)
                    hi = tl.max(high, axis=0).to(tl.float64)
                    scale = libdevice.div_rn(tl.full([], 255.0, dtype=tl.float64), tl.maximum(hi - lo, 1.0))
                    stretched = libdevice.add_rn(libdevice.mul_rn(levels.to(tl.float64), scale),
                                                 -libdevice.mul_rn(lo, scale))
                    table = tl.minimum(tl.maximum(libdevice.trunc(stretched), 0.0), 255.0).to(tl.int32)
                    table = tl.where(hi > lo, table, levels)
                else:
                    present = hist > 0
                    top = tl.max(tl.where(present, levels, -1), axis=0)
                    last = tl.sum(tl.where(levels == top, hist, 0), axis=0)
                    step = (tl.sum(hist, axis=0) - last) // 255
                    before = tl.cumsum(hist, 0) - hist
                    table = tl.minimum((step // 2 + before) // tl.maximum(step, 1), 255)
                    keep = (step == 0) | (tl.sum(present.to(tl.int32), axis=0) <= 1)
                    table = tl.where(keep, levels, table)
                tl.store(luts + (b * 3 + channel) * 256 + levels, table.to(tl.uint8))

    return pixel_tables


@functools.cache
def _build_layer():
    import triton
    import triton.language as tl
    from triton.language.extra import libdevice

    @triton.jit
    def _cubic(v1, v2, v3, v4, d):
        # PIL's BICUBIC macro; the multiplications by 2 are exact, so only Horner's steps need rounding one by one
        p2 = v3 - v1
        p3 = 2.0 * (v1 - v2) + v3 - v4
        p4 = -v1 + v2 - v3 + v4
        inner = libdevice.add_rn(p3, libdevice.mul_rn(d, p4))
        return libdevice.add_rn(v2, libdevice.mul_rn(d, libdevice.add_rn(p2, libdevice.mul_rn(d, inner))))

    @triton.jit
    def _cubic_row(line, ix, d, size, inside):
        v1 = tl.load(line + tl.minimum(tl.maximum(ix - 1, 0), size - 1), mask=inside, other=0).to(tl.float64)
        v2 = tl.load(line + tl.minimum(tl.maximum(ix, 0), size - 1), mask=inside, other=0).to(tl.float64)
        v3 = tl.load(line + tl.minimum(tl.maximum(ix + 1, 0), size - 1), mask=inside, other=0).to(tl.float64)
        v4 = tl.load(line + tl.minimum(tl.maximum(ix + 2, 0), size - 1), mask=inside, other=0).to(tl.float64)
        return _cubic(v1, v2, v3, v4, d)

    @triton.jit
    def _linear(a, b, d):
        return libdevice.add_rn(a, libdevice.mul_rn(b - a, d))

    @triton.jit
    def _linear_row(line, ix, d, size, inside):
        a = tl.load(line + tl.minimum(tl.maximum(ix, 0), size - 1), mask=inside, other=0).to(tl.float64)
        b = tl.load(line + tl.minimum(tl.maximum(ix + 1, 0), size - 1), mask=inside, other=0).to(tl.float64)
        return _linear(a, b, d)

    @triton.jit
    def layer(src, out, ops, factors, means, luts, matrices, fill, size, FIRST_TABLE: tl.constexpr,
              LAST_TABLE: tl.constexpr, FIRST_BLEND: tl.constexpr, LAST_BLEND: tl.constexpr, COLOR: tl.constexpr,
              CONTRAST: tl.constexpr, SHARPNESS: tl.constexpr, FIRST_GEOMETRIC: tl.constexpr, BICUBIC: tl.constexpr,
              BLOCK: tl.constexpr):
        program = tl.program_id(0)
        y = program % size
        channel = (program // size) % 3
        b = (program // (3 * size)).to(tl.int64)
        xs = tl.arange(0, BLOCK)
        inside = xs < size
        plane = size * size
        image = src + b * 3 * plane
        row = image + channel * plane + y * size
        value = tl.load(row + xs, mask=inside, other=0).to(tl.int32)
        op = tl.load(ops + b)
        result = value
        if (op >= FIRST_TABLE) & (op <= LAST_TABLE):  # auto contrast, equalize, invert, posterize, solarize (add)
            result = tl.load(luts + (b * 3 + channel) * 256 + value, mask=inside, other=0).to(tl.int32)
        if (op >= FIRST_BLEND) & (op <= LAST_BLEND):  # a blend with a degenerate image, truncated as Image.blend
            degenerate = tl.zeros([BLOCK], dtype=tl.float32)
            if op == COLOR:  # colour: PIL's RGB -> L
                red = tl.load(image + y * size + xs, mask=inside, other=0).to(tl.int32)
                green = tl.load(image + plane + y * size + xs, mask=inside, other=0).to(tl.int32)
                blue = tl.load(image + 2 * plane + y * size + xs, mask=inside, other=0).to(tl.int32)
                degenerate = ((red * 19595 + green * 38470 + blue * 7471 + 32768) >> 16).to(tl.float32)
            if op == CONTRAST:  # contrast: the rounded mean of L
                degenerate += tl.load(means + b)
            if op == SHARPNESS:  # sharpness: SMOOTH (1 1 1 / 1 5 1 / 1 1 1) / 13, the border kept
                total = 4 * value
                for dy in tl.static_range(3):
                    line = image + channel * plane + tl.minimum(tl.maximum(y + dy - 1, 0), size - 1) * size
                    for dx in tl.static_range(3):
                        column = tl.minimum(tl.maximum(xs + dx - 1, 0), size - 1)
                        total += tl.load(line + column, mask=inside, other=0).to(tl.int32)
                border = (xs == 0) | (xs == size - 1) | (y == 0) | (y == size - 1)
                degenerate = tl.where(border, value, (2 * total + 13) // 26).to(tl.float32)
            factor = tl.load(factors + b)
            blended = libdevice.add_rn(degenerate,
                                       libdevice.mul_rn(factor, libdevice.add_rn(value.to(tl.float32), -degenerate)))
            result = tl.floor(tl.minimum(tl.maximum(blended, 0.0), 255.0)).to(tl.int32)
        if op >= FIRST_GEOMETRIC:  # rotate / shear / translate: PIL's affine transform of pixel centres
            m0 = tl.load(matrices + b * 6)
            m1 = tl.load(matrices + b * 6 + 1)
            m2 = tl.load(matrices + b * 6 + 2)
            m3 = tl.load(matrices + b * 6 + 3)
            m4 = tl.load(matrices + b * 6 + 4)
            m5 = tl.load(matrices + b * 6 + 5)
            px = xs.to(tl.float64) + 0.5
            py = y.to(tl.float64) + 0.5
            sx = libdevice.add_rn(libdevice.add_rn(libdevice.mul_rn(m0, px), libdevice.mul_rn(m1, py)), m2)
            sy = libdevice.add_rn(libdevice.add_rn(libdevice.mul_rn(m3, px), libdevice.mul_rn(m4, py)), m5)
            valid = (sx >= 0) & (sx < size) & (sy >= 0) & (sy < size)
            fx = sx - 0.5
            fy = sy - 0.5
            bx = tl.floor(fx)
            by = tl.floor(fy)
            dx = fx - bx
            dy = fy - by
            ix = bx.to(tl.int32)
            iy = by.to(tl.int32)
            lines = image + channel * plane
            if BICUBIC:
                r1 = _cubic_row(lines + tl.minimum(tl.maximum(iy - 1, 0), size - 1) * size, ix, dx, size, inside)
                r2 = _cubic_row(lines + tl.minimum(tl.maximum(iy, 0), size - 1) * size, ix, dx, size, inside)
                r3 = _cubic_row(lines + tl.minimum(tl.maximum(iy + 1, 0), size - 1) * size, ix, dx, size, inside)
                r4 = _cubic_row(lines + tl.minimum(tl.maximum(iy + 2, 0), size - 1) * size, ix, dx, size, inside)
                sampled = _cubic(r1, r2, r3, r4, dy)
            else:
                r1 = _linear_row(lines + tl.minimum(tl.maximum(iy, 0), size - 1) * size, ix, dx, size, inside)
                r2 = _linear_row(lines + tl.minimum(tl.maximum(iy + 1, 0), size - 1) * size, ix, dx, size, inside)
                sampled = _linear(r1, r2, dy)
            truncated = tl.minimum(tl.maximum(sampled, 0.0), 255.0).to(tl.int32)
            result = tl.where(valid, truncated, tl.load(fill + channel))
        tl.store(out + b * 3 * plane + channel * plane + y * size + xs, result.to(tl.uint8), mask=inside)

    return layer
