"""Batched device versions of timm's train transform (RandomResizedCrop, flip, RandAugment or colour
jitter, normalisation, random erasing) and of the resize / centre-crop eval transform.

A plan is read off the very transform object the CPU path would use (:func:`plan_from_transform`),
so both paths are configured by one code path. Per-image parameters are drawn on the host by the same
samplers, consuming the same random streams in the same order as the CPU transform (timm's
``RandomResizedCropAndInterpolation.get_params``, torchvision's flip and ``ColorJitter.get_params``,
timm's RandAugment choice and level functions, timm's erasing rule): with equal seeds both paths draw
equal parameters. Pixels are only touched on the device, batched, with the parameters as tensors.

Written here rather than taken from a library: kornia's batched augmentations draw their parameters by
rules of their own (another RandAugment op set and magnitude scale, contrast without PIL's grey mean,
constant-colour erasing) and need equally sized inputs, while decoded images differ in size;
torchvision's v2 functional ops take one parameter for the whole batch; DALI is not a dependency of this
suite. The ops follow the PIL definitions the CPU path applies, and tests compare them with PIL.
"""
from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from timm.data.auto_augment import _LEVEL_DENOM, RandAugment
from timm.data.random_erasing import RandomErasing
from timm.data.transforms import MaybeToTensor, RandomResizedCropAndInterpolation
from torchvision import transforms
from torchvision.transforms import InterpolationMode

# Device op table; several timm / torchvision functions map to one op (translations take pixels).
OP_NAMES = ("auto_contrast", "equalize", "invert", "posterize", "solarize", "solarize_add", "color", "contrast",
            "brightness", "sharpness", "rotate", "shear_x", "shear_y", "translate_x", "translate_y")
OP_INDEX = {name: index for index, name in enumerate(OP_NAMES)}
GEOMETRIC = frozenset(OP_INDEX[name] for name in ("rotate", "shear_x", "shear_y", "translate_x", "translate_y"))
_TIMM_OPS = {"auto_contrast": "auto_contrast", "equalize": "equalize", "invert": "invert", "posterize": "posterize",
             "solarize": "solarize", "solarize_add": "solarize_add", "color": "color", "contrast": "contrast",
             "brightness": "brightness", "sharpness": "sharpness", "rotate": "rotate", "shear_x": "shear_x",
             "shear_y": "shear_y", "translate_x_rel": "translate_x", "translate_y_rel": "translate_y",
             "translate_x_abs": "translate_x", "translate_y_abs": "translate_y"}
_JITTER_OPS = ("brightness", "contrast", "color", None)  # ColorJitter.get_params order; hue is refused
_FILTERS = {"bilinear": 1.0, "bicubic": 2.0}  # PIL's filter supports
_MODES = {InterpolationMode.BILINEAR: "bilinear", InterpolationMode.BICUBIC: "bicubic"}


class UnsupportedTransform(ValueError):
    """The transform holds a step the device path does not implement."""


def _mode(interpolation, where: str) -> str:
    if isinstance(interpolation, (list, tuple)):
        raise UnsupportedTransform(f"{where}: random interpolation is not implemented on the GPU data path; "
                                   f"set --interpolation bicubic or bilinear, or use the CPU data path")
    if isinstance(interpolation, InterpolationMode) and interpolation in _MODES:
        return _MODES[interpolation]
    name = getattr(interpolation, "name", str(interpolation)).lower()
    if name not in _FILTERS:
        raise UnsupportedTransform(f"{where}: interpolation {name!r} is not implemented on the GPU data path "
                                   f"(bilinear, bicubic)")
    return name


@dataclass
class AugmentPlan:
    """What the device does to each decoded image, and the host-side sampler of its parameters.

    Parameters of one image are a flat float64 vector (``sample``), so a batch is one (B, P) tensor:
    the source region (top, left, height, width) that is resized, the size it is resized to and the
    offset of the kept window in it (the crop itself to S x S at offset 0 for a random resized crop; the
    whole image to the resize size, offset by the centre crop, for resize + centre crop), flip, op id /
    argument per op layer (-1: none), and ``erase_boxes`` erasing boxes (height 0: none)."""

    size: int
    interpolation: str
    random_crop: Optional[RandomResizedCropAndInterpolation] = None
    resize: int = 0
    hflip: float = 0.0
    rand_augment: Optional[RandAugment] = None
    jitter: Optional[transforms.ColorJitter] = None
    mean: Optional[Tuple[float, float, float]] = None
    std: Optional[Tuple[float, float, float]] = None
    erasing: Optional[RandomErasing] = None

    @property
    def layers(self) -> int:
        if self.rand_augment is not None:
            return self.rand_augment.num_layers
        return 4 if self.jitter is not None else 0

    @property
    def erase_boxes(self) -> int:
        return self.erasing.max_count if self.erasing is not None else 0

    @property
    def param_size(self) -> int:
        return 9 + 2 * self.layers + 4 * self.erase_boxes

    def sample(self, image) -> np.ndarray:
        """Parameters for one image (anything with PIL's ``.size``; a lazily opened PIL image is enough),
        drawn from the global ``random`` / ``numpy`` / ``torch`` streams in the CPU transform's order."""
        width, height = image.size
        params = np.zeros(self.param_size)
        if self.random_crop is not None:
            top, left, h, w = self.random_crop.get_params(image, self.random_crop.scale, self.random_crop.ratio)
            params[0:8] = (top, left, h, w, self.size, self.size, 0, 0)
        else:
            params[0:8] = (0, 0, height, width, *resize_and_center(height, width, self.resize, self.size))
        if self.hflip > 0:
            params[8] = float(torch.rand(1) < self.hflip)  # as torchvision's RandomHorizontalFlip draws
        ops, args = params[9:9 + self.layers], params[9 + self.layers:9 + 2 * self.layers]
        ops[:] = -1
        if self.rand_augment is not None:
            self._sample_rand_augment(ops, args)
        elif self.jitter is not None:
            self._sample_jitter(ops, args)
        if self.erasing is not None:
            self._sample_erasing(params[9 + 2 * self.layers:].reshape(-1, 4))
        return params

    def _sample_rand_augment(self, ops: np.ndarray, args: np.ndarray) -> None:
        augment = self.rand_augment
        chosen = np.random.choice(augment.ops, augment.num_layers, replace=augment.choice_weights is None,
                                  p=augment.choice_weights)
        for layer, op in enumerate(chosen):  # AugmentOp.__call__ without the pixels
            if op.prob < 1.0 and random.random() > op.prob:
                continue
            magnitude = op.magnitude
            if op.magnitude_std == float("inf"):
                magnitude = random.uniform(0, magnitude)
            elif op.magnitude_std > 0:
                magnitude = random.gauss(magnitude, op.magnitude_std)
            magnitude = max(0.0, min(magnitude, op.magnitude_max or _LEVEL_DENOM))
            level = op.level_fn(magnitude, op.hparams) if op.level_fn is not None else (0.0,)
            name = _TIMM_OPS[op.aug_fn.__name__]
            value = level[0]
            if op.aug_fn.__name__.endswith("_rel"):
                value *= self.size  # translate_*_rel take a fraction of the (square) image side
            ops[layer], args[layer] = OP_INDEX[name], value

    def _sample_jitter(self, ops: np.ndarray, args: np.ndarray) -> None:
        jitter = self.jitter
        order, *factors = jitter.get_params(jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue)
        for slot, which in enumerate(order.tolist()):
            if factors[which] is not None and _JITTER_OPS[which] is not None:
                ops[slot], args[slot] = OP_INDEX[_JITTER_OPS[which]], factors[which]

    def _sample_erasing(self, boxes: np.ndarray) -> None:
        erasing, size = self.erasing, self.size
        if random.random() > erasing.probability:  # RandomErasing._erase without the pixels
            return
        count = erasing.min_count if erasing.min_count == erasing.max_count else \
            random.randint(erasing.min_count, erasing.max_count)
        for index in range(count):
            for _ in range(10):
                target_area = random.uniform(erasing.min_area, erasing.max_area) * size * size / count
                aspect_ratio = math.exp(random.uniform(*erasing.log_aspect_ratio))
                h = int(round(math.sqrt(target_area * aspect_ratio)))
                w = int(round(math.sqrt(target_area / aspect_ratio)))
                if w < size and h < size:
                    boxes[index] = (random.randint(0, size - h), random.randint(0, size - w), h, w)
                    # timm fills the box with torch's CPU normal draws here: draw as many, so every later
                    # draw (the next image's flip, say) stays equal to the CPU path's
                    if erasing.per_pixel:
                        torch.empty((3, h, w)).normal_()
                    elif erasing.rand_color:
                        torch.empty((3, 1, 1)).normal_()
                    break


def resize_and_center(height: int, width: int, resize: int, size: int) -> Tuple[int, int, int, int]:
    """torchvision's Resize(resize) (shorter side) then CenterCrop(size): resized (H, W) and window offset."""
    short, long = (height, width) if height <= width else (width, height)
    new_short, new_long = resize, int(resize * long / short)
    new_h, new_w = (new_short, new_long) if height <= width else (new_long, new_short)
    if new_h < size or new_w < size:
        raise UnsupportedTransform(f"centre crop {size} is larger than the resized image {new_h}x{new_w}")
    return new_h, new_w, int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))


def plan_from_transform(transform) -> AugmentPlan:
    """The device plan of a timm / torchvision ``Compose`` (timm's train / eval / no-aug transforms, the
    robustness eval transform); anything else raises :class:`UnsupportedTransform`."""
    steps = list(transform.transforms) if isinstance(transform, transforms.Compose) else [transform]
    fields: Dict = {}
    for step in steps:
        if isinstance(step, RandomResizedCropAndInterpolation):
            fields.update(random_crop=step, size=_square(step.size), interpolation=_mode(step.interpolation, "crop"))
        elif isinstance(step, transforms.Resize):
            if not isinstance(step.size, int) and len(step.size) != 1:
                raise UnsupportedTransform(f"Resize to a fixed {tuple(step.size)} is not implemented on the GPU "
                                           f"data path (shorter-side resize only)")
            fields.update(resize=step.size if isinstance(step.size, int) else step.size[0],
                          interpolation=_mode(step.interpolation, "resize"))
        elif isinstance(step, transforms.CenterCrop):
            fields["size"] = _square(step.size)
        elif isinstance(step, transforms.RandomHorizontalFlip):
            fields["hflip"] = step.p
        elif isinstance(step, RandAugment):
            for op in step.ops:
                if op.aug_fn.__name__ not in _TIMM_OPS:
                    raise UnsupportedTransform(f"RandAugment op {op.name} is not implemented on the GPU data path")
            augment_modes = {_mode(op.kwargs["resample"], f"RandAugment {op.name}") for op in step.ops}
            fields["rand_augment"] = step
        elif isinstance(step, transforms.ColorJitter):
            if step.hue is not None:
                raise UnsupportedTransform("colour jitter with hue is not implemented on the GPU data path")
            fields["jitter"] = step
        elif isinstance(step, (MaybeToTensor, transforms.ToTensor)):
            continue
        elif isinstance(step, transforms.Normalize):
            fields.update(mean=tuple(float(v) for v in torch.as_tensor(step.mean)),
                          std=tuple(float(v) for v in torch.as_tensor(step.std)))
        elif isinstance(step, RandomErasing):
            fields["erasing"] = step
        else:
            raise UnsupportedTransform(f"{type(step).__name__} is not implemented on the GPU data path; "
                                       f"use the CPU data path")
    if "size" not in fields or ("random_crop" not in fields and "resize" not in fields):
        raise UnsupportedTransform(f"expected a RandomResizedCrop, or a Resize and a CenterCrop, in {transform}")
    if "rand_augment" in fields and "jitter" in fields:
        raise UnsupportedTransform("RandAugment together with colour jitter is not implemented on the GPU data path")
    plan = AugmentPlan(**fields)
    if plan.rand_augment is not None and augment_modes != {plan.interpolation}:
        raise UnsupportedTransform("RandAugment and the crop use different interpolations")
    return plan


def _square(size) -> int:
    if isinstance(size, int):
        return size
    if len(size) == 1 or size[0] == size[1]:
        return int(size[0])
    raise UnsupportedTransform(f"non-square output {tuple(size)} is not implemented on the GPU data path")


# ----------------------------------------------------------------------------------------------------
# Resampling: PIL's antialiased resize of a box, from images of different sizes packed in one buffer,
# in PIL's own integer arithmetic (22-bit weights, 8-bit result after each pass), so outputs match PIL's.

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
    support = _FILTERS[interpolation] * filter_scale
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
    support = _FILTERS[interpolation] * max((lengths.double() / resized.double()).max().item(), 1.0)
    return int(math.ceil(support)) * 2 + 1


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


_triton_kernel = None


def _pass_triton(src: torch.Tensor, p: AxisPass) -> torch.Tensor:
    """The same pass as one Triton kernel: taps are read straight from the packed images, accumulated
    in int32 as PIL does, and no (B, lines, 3, S, taps) index tensor is ever built. A program covers
    ``LINES`` lines of one channel, so each tap's weights are loaded once for all of them."""
    global _triton_kernel
    if _triton_kernel is None:
        _triton_kernel = _build_triton_kernel()
    batch, out_size, taps = p.weights.shape
    out = torch.empty(batch, p.lines, 3, out_size, device=src.device, dtype=torch.uint8)
    block, lines_per_program = 256, 8
    grid = (batch * 3 * ((p.lines + lines_per_program - 1) // lines_per_program), (out_size + block - 1) // block)
    _triton_kernel[grid](src, out, p.base, p.chan, p.line_stride, p.line0, p.line_max, p.tap_max, p.first,
                         p.weights.transpose(1, 2).contiguous(), p.tap_stride, p.lines, out_size, taps,
                         LINES=lines_per_program, BLOCK=block)
    return out


def _build_triton_kernel():
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


_triton_vertical = None


def _vertical_triton(rows_tmp: torch.Tensor, first: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The vertical pass with a program per output row: its lanes run along x, so every tap is one
    contiguous read of a row of the horizontal pass."""
    global _triton_vertical
    if _triton_vertical is None:
        _triton_vertical = _build_triton_vertical()
    batch, rows, _, width = rows_tmp.shape
    out_rows, taps = weights.shape[1:]
    out = torch.empty(batch, 3, out_rows, width, device=rows_tmp.device, dtype=torch.uint8)
    block = 256
    grid = (batch * 3 * out_rows, (width + block - 1) // block)
    _triton_vertical[grid](rows_tmp, out, first, weights, rows, out_rows, width, taps, BLOCK=block)
    return out


def _build_triton_vertical():
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


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host -> device copy that does not wait for the stream: from pinned memory on CUDA."""
    if device.type == "cuda" and not tensor.is_pinned():
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


def batch_seed(params: torch.Tensor) -> int:
    """A 63-bit seed that is a function of a batch's (host) parameter table."""
    digest = hashlib.blake2b(params.contiguous().numpy().tobytes(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def triton_available(device: torch.device) -> bool:
    if device.type != "cuda":
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


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
    horizontal = (_pass_triton if triton else _pass_reference)(
        flat, AxisPass(offsets, plane, width, row0, last_row, last_col, 1, rows, (col0[:, None] + first_x).contiguous(),
                       weights_x.contiguous()))
    return (_vertical_triton if triton else _vertical_reference)(
        horizontal, (first_y - row_lo[:, None]).contiguous(), weights_y.contiguous())


# ----------------------------------------------------------------------------------------------------
# RandAugment / colour jitter ops on (N, 3, S, S) float images holding integers in [0, 255], one
# argument per image, each as PIL defines it (8-bit results after every op).

def _grey(x: torch.Tensor) -> torch.Tensor:
    """PIL's RGB -> L: (R 19595 + G 38470 + B 7471 + 2^15) >> 16 (exact in float32)."""
    return torch.floor((x[:, 0] * 19595 + x[:, 1] * 38470 + x[:, 2] * 7471 + 32768) / 65536)[:, None]


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's Image.blend: degenerate + factor (x - degenerate), truncated to 8 bits."""
    return torch.floor((degenerate + factor.view(-1, 1, 1, 1) * (x - degenerate)).clamp(0, 255))


def _ramp(count: int, device: torch.device) -> torch.Tensor:
    """(count, 3, 1, 256) image of the 256 levels: a pointwise op applied to it is its lookup table."""
    return torch.arange(256, device=device, dtype=torch.float32).expand(count, 3, 1, 256)


def _apply_lut(x: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    return lut.gather(2, x.reshape(x.shape[0], 3, -1).long()).view_as(x)


def _auto_contrast_lut(x: torch.Tensor) -> torch.Tensor:
    """PIL's autocontrast table per channel: (n, 3, 256), stretched in float64 as Python does."""
    flat = x.reshape(x.shape[0], 3, -1).double()
    lo, hi = flat.amin(-1, keepdim=True), flat.amax(-1, keepdim=True)
    ramp = torch.arange(256, device=x.device, dtype=torch.float64)
    scale = torch.full_like(hi, 255.0) / (hi - lo).clamp(min=1)  # correctly rounded, as Python's 255.0 / n
    stretched = torch.trunc(ramp * scale + (-lo * scale)).clamp(0, 255)
    return torch.where(hi > lo, stretched, ramp).float()


def _equalize_lut(x: torch.Tensor) -> torch.Tensor:
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
    return _apply_lut(x, _auto_contrast_lut(x))


def equalize(x: torch.Tensor, _arg: torch.Tensor) -> torch.Tensor:
    return _apply_lut(x, _equalize_lut(x))


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


_POINTWISE = {"auto_contrast": auto_contrast, "equalize": equalize, "invert": invert, "posterize": posterize,
              "solarize": solarize, "solarize_add": solarize_add, "color": color, "contrast": contrast,
              "brightness": brightness, "sharpness": sharpness}


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
    rows = {OP_INDEX["rotate"]: rotate,
            OP_INDEX["shear_x"]: np.stack([one, args, zero, zero, one, zero], -1),
            OP_INDEX["shear_y"]: np.stack([one, zero, zero, args, one, zero], -1),
            OP_INDEX["translate_x"]: np.stack([one, zero, args, zero, one, zero], -1),
            OP_INDEX["translate_y"]: np.stack([one, zero, zero, zero, one, args], -1)}
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


_LUT_OPS = ("auto_contrast", "equalize", "invert", "posterize", "solarize", "solarize_add")
_ARGUMENT_LUT_OPS = ("invert", "posterize", "solarize", "solarize_add")  # tables that need no pixels
_PIXEL_TABLE_OPS = ("auto_contrast", "equalize", "contrast")
_BLEND_OPS = ("color", "contrast", "brightness", "sharpness")
assert [OP_INDEX[name] for name in _LUT_OPS + _BLEND_OPS] == list(range(10)) and min(GEOMETRIC) == 10
_triton_layer = None


def _layer_triton(x: torch.Tensor, ops: torch.Tensor, factors: torch.Tensor, means: torch.Tensor, luts: torch.Tensor,
                  matrices: torch.Tensor, fill: torch.Tensor, interpolation: str) -> torch.Tensor:
    """One RandAugment / colour-jitter layer for the whole uint8 batch in one kernel: each image's op
    picks its branch (a 256-entry table, a blend, or PIL's affine sampling). Products and sums are
    rounded one at a time (no fused multiply-add), as PIL's C code computes them."""
    global _triton_layer
    if _triton_layer is None:
        _triton_layer = _build_triton_layer()
    batch, _, size, _ = x.shape
    out = torch.empty_like(x)
    block = max(32, 1 << (size - 1).bit_length())
    _triton_layer[(batch * 3 * size,)](x, out, ops, factors, means, luts, matrices, fill, size,
                                       BICUBIC=interpolation == "bicubic", BLOCK=block)
    return out


_triton_pixel_tables = None


def _pixel_tables_triton(x: torch.Tensor, ops: torch.Tensor, luts: torch.Tensor, means: torch.Tensor) -> None:
    """Writes the pixel-dependent inputs of a layer in one kernel, a program per image: autocontrast and
    equalize tables (into ``luts``, (N, 3, 256) uint8) and contrast means (into ``means``), each for the
    images whose op needs it, with the integer arithmetic of :func:`_auto_contrast_lut`,
    :func:`_equalize_lut` and :func:`grey_mean`."""
    global _triton_pixel_tables
    if _triton_pixel_tables is None:
        _triton_pixel_tables = _build_triton_pixel_tables()
    batch, _, size, _ = x.shape
    _triton_pixel_tables[(batch,)](x, ops, luts, means, size * size, AUTO_CONTRAST=OP_INDEX["auto_contrast"],
                                   EQUALIZE=OP_INDEX["equalize"], CONTRAST=OP_INDEX["contrast"], BLOCK=1024)


def _build_triton_pixel_tables():
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


def _build_triton_layer():
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
    def layer(src, out, ops, factors, means, luts, matrices, fill, size, BICUBIC: tl.constexpr, BLOCK: tl.constexpr):
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
        if (op >= 0) & (op < 6):  # a table: auto contrast, equalize, invert, posterize, solarize, solarize add
            result = tl.load(luts + (b * 3 + channel) * 256 + value, mask=inside, other=0).to(tl.int32)
        if (op >= 6) & (op < 10):  # a blend with a degenerate image, truncated to 8 bits as Image.blend
            degenerate = tl.zeros([BLOCK], dtype=tl.float32)
            if op == 6:  # colour: PIL's RGB -> L
                red = tl.load(image + y * size + xs, mask=inside, other=0).to(tl.int32)
                green = tl.load(image + plane + y * size + xs, mask=inside, other=0).to(tl.int32)
                blue = tl.load(image + 2 * plane + y * size + xs, mask=inside, other=0).to(tl.int32)
                degenerate = ((red * 19595 + green * 38470 + blue * 7471 + 32768) >> 16).to(tl.float32)
            if op == 7:  # contrast: the rounded mean of L
                degenerate += tl.load(means + b)
            if op == 9:  # sharpness: SMOOTH (1 1 1 / 1 5 1 / 1 1 1) / 13, the border kept
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
        if op >= 10:  # rotate / shear / translate: PIL's affine transform of pixel centres
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


class DeviceAugment:
    """Applies an :class:`AugmentPlan` to a batch of decoded images on their device."""

    def __init__(self, plan: AugmentPlan, device: torch.device) -> None:
        self.plan = plan
        self.device = device
        fill = plan.rand_augment.ops[0].kwargs["fillcolor"] if plan.rand_augment is not None else (0, 0, 0)
        self.fill = torch.tensor(fill, dtype=torch.float32, device=device)
        self.fill_levels = self.fill.int()
        if plan.mean is not None:
            self.mean = torch.tensor(plan.mean, device=device).view(1, 3, 1, 1) * 255
            self.std = torch.tensor(plan.std, device=device).view(1, 3, 1, 1) * 255
        self.use_triton = triton_available(device)
        # Erasing noise from a generator of its own, seeded per batch from the batch's parameters: the noise
        # then depends only on what the loader workers drew (as on the CPU path, where they draw the noise
        # too), not on which thread or process augments nor on what it augmented before, so a resumed run
        # repeats it. The global generator would be shared with training, in an order set by thread timing.
        self.noise = torch.Generator(device=device)

    def __call__(self, flat: torch.Tensor, sizes: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """flat: packed (3, H, W) uint8 images on the device; sizes (B, 2) and params (B, P) on the host."""
        plan = self.plan
        x = resample_boxes(flat, sizes, params[:, 0:4], params[:, 4:8], plan.size, plan.interpolation,
                           self.use_triton)
        device_params = to_device(params, self.device)
        if plan.hflip > 0:
            x = torch.where(device_params[:, 8].view(-1, 1, 1, 1) > 0, x.flip(3), x)
        layers = plan.layers
        apply = self._apply_layer_fused if self.use_triton else self._apply_layer
        x = x if self.use_triton else x.float()
        for layer in range(layers):
            x = apply(x, params[:, 9 + layer], params[:, 9 + layers + layer], device_params[:, 9 + layer],
                      device_params[:, 9 + layers + layer])
        x = x.float()
        if plan.mean is not None:
            x = (x - self.mean) / self.std
        else:
            x = x / 255
        if plan.erasing is not None:
            self.noise.manual_seed(batch_seed(params))
            x = self._erase(x, device_params[:, 9 + 2 * layers:].view(len(x), -1, 4))
        return x

    def _apply_layer_fused(self, x: torch.Tensor, host_ops: torch.Tensor, host_args: torch.Tensor, ops: torch.Tensor,
                           args: torch.Tensor) -> torch.Tensor:
        """One kernel per layer (:func:`_layer_triton`). Its tables and affine maps are made first: on the
        host those that depend only on an image's op and argument (sent in one copy each), on the device,
        in one more kernel, those that depend on the pixels (contrast means, autocontrast and equalize
        tables). A handful of launches per layer: the augment thread's host time is GIL time taken from
        the training thread."""
        host_ops = host_ops.long()
        present = set(host_ops.unique().tolist())
        if not any(op >= 0 for op in present):
            return x
        batch = len(x)
        luts = torch.arange(256, dtype=torch.uint8).repeat(batch, 3, 1)
        for name in _ARGUMENT_LUT_OPS:
            if OP_INDEX[name] in present:
                index = (host_ops == OP_INDEX[name]).nonzero().flatten()
                table = _POINTWISE[name](_ramp(len(index), luts.device), host_args[index].float())
                luts[index] = table.view(-1, 3, 256).to(torch.uint8)
        luts = to_device(luts, self.device)
        matrices = to_device(affine_matrices(host_ops, host_args, x.shape[-1]), self.device)
        means = torch.zeros(batch, device=x.device)
        ops = ops.int()
        if present & {OP_INDEX[name] for name in _PIXEL_TABLE_OPS}:
            _pixel_tables_triton(x, ops, luts, means)
        return _layer_triton(x, ops, args.float(), means, luts, matrices, self.fill_levels,
                             self.plan.interpolation)

    def _apply_layer(self, x: torch.Tensor, host_ops: torch.Tensor, host_args: torch.Tensor, ops: torch.Tensor,
                     args: torch.Tensor) -> torch.Tensor:
        """Each op runs once on the images that drew it (grouped on the host, no device read)."""
        host_ops = host_ops.long()
        groups: List[Tuple[str, torch.Tensor]] = []
        geometric_mask = torch.zeros_like(host_ops, dtype=torch.bool)
        for op in GEOMETRIC:
            geometric_mask |= host_ops == op
        if bool(geometric_mask.any()):
            groups.append(("geometric", geometric_mask.nonzero().flatten()))
        for name, fn in _POINTWISE.items():
            members = (host_ops == OP_INDEX[name]).nonzero().flatten()
            if len(members):
                groups.append((name, members))
        if not groups:
            return x
        indices = self._indices_on_device([members for _, members in groups])
        x = x.clone()
        for (name, _), index in zip(groups, indices):
            part = x.index_select(0, index)
            if name == "geometric":
                part = geometric(part, ops.index_select(0, index), args.index_select(0, index), self.fill,
                                 self.plan.interpolation)
            else:
                part = _POINTWISE[name](part, args.index_select(0, index).float())
            x.index_copy_(0, index, part)
        return x

    def _indices_on_device(self, groups: List[torch.Tensor]) -> List[torch.Tensor]:
        """Host index groups moved to the device in one copy."""
        if not groups:
            return []
        return list(to_device(torch.cat(groups), self.device).split([len(group) for group in groups]))

    def _erase(self, x: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        erasing = self.plan.erasing
        size = x.shape[-1]
        position = torch.arange(size, device=x.device)
        for index in range(boxes.shape[1]):
            top, left, h, w = (boxes[:, index, k].long().view(-1, 1) for k in range(4))
            rows = (position >= top) & (position < top + h)
            cols = (position >= left) & (position < left + w)
            mask = (rows[:, :, None] & cols[:, None, :])[:, None]
            if erasing.per_pixel:
                values = torch.randn(x.shape, device=x.device, generator=self.noise)
            elif erasing.rand_color:
                values = torch.randn(len(x), 3, 1, 1, device=x.device, generator=self.noise).expand_as(x)
            else:
                values = torch.zeros_like(x)
            x = torch.where(mask, values, x)
        return x
