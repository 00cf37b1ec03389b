"""Host side of the GPU data path: the device plan read off a timm / torchvision transform, and the
per-image parameters drawn by the same samplers, in the same random streams and order, as the CPU
transform (timm's ``RandomResizedCropAndInterpolation.get_params``, torchvision's flip and
``ColorJitter.get_params``, timm's RandAugment choice and level functions, timm's erasing rule): with
equal seeds both paths draw equal parameters. Why the ops are written here rather than taken from a
library: docs/gpu_data_path.md."""
from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from timm.data.auto_augment import _LEVEL_DENOM, RandAugment
from timm.data.random_erasing import RandomErasing
from timm.data.transforms import MaybeToTensor, RandomResizedCropAndInterpolation
from torchvision import transforms
from torchvision.transforms import InterpolationMode

from ...errors import ConfigError


class Op(enum.IntEnum):
    """Device op ids, shared by the host tables and the Triton kernels. Their order groups them: table
    ops, then blends, then the affine ops (the layer kernel branches on these ranges)."""

    AUTO_CONTRAST = 0
    EQUALIZE = 1
    INVERT = 2
    POSTERIZE = 3
    SOLARIZE = 4
    SOLARIZE_ADD = 5
    COLOR = 6
    CONTRAST = 7
    BRIGHTNESS = 8
    SHARPNESS = 9
    ROTATE = 10
    SHEAR_X = 11
    SHEAR_Y = 12
    TRANSLATE_X = 13
    TRANSLATE_Y = 14


NO_OP = -1
OP_NAMES = tuple(op.name.lower() for op in Op)
OP_INDEX = {op.name.lower(): int(op) for op in Op}
TABLE_OPS = (Op.AUTO_CONTRAST, Op.EQUALIZE, Op.INVERT, Op.POSTERIZE, Op.SOLARIZE, Op.SOLARIZE_ADD)
BLEND_OPS = (Op.COLOR, Op.CONTRAST, Op.BRIGHTNESS, Op.SHARPNESS)
GEOMETRIC = frozenset((Op.ROTATE, Op.SHEAR_X, Op.SHEAR_Y, Op.TRANSLATE_X, Op.TRANSLATE_Y))
_TIMM_OPS = {"auto_contrast": "auto_contrast", "equalize": "equalize", "invert": "invert", "posterize": "posterize",
             "solarize": "solarize", "solarize_add": "solarize_add", "color": "color", "contrast": "contrast",
             "brightness": "brightness", "sharpness": "sharpness", "rotate": "rotate", "shear_x": "shear_x",
             "shear_y": "shear_y", "translate_x_rel": "translate_x", "translate_y_rel": "translate_y",
             "translate_x_abs": "translate_x", "translate_y_abs": "translate_y"}
_JITTER_OPS = ("brightness", "contrast", "color", None)  # ColorJitter.get_params order; hue is refused
FILTER_SUPPORT = {"bilinear": 1.0, "bicubic": 2.0}  # PIL's filter supports
_MODES = {InterpolationMode.BILINEAR: "bilinear", InterpolationMode.BICUBIC: "bicubic"}


class UnsupportedTransform(ConfigError):
    """The transform holds a step the device path does not implement."""


def _mode(interpolation, where: str) -> str:
    if isinstance(interpolation, (list, tuple)):
        raise UnsupportedTransform(f"{where}: random interpolation is not implemented on the GPU data path; "
                                   f"set --interpolation bicubic or bilinear, or use the CPU data path")
    if isinstance(interpolation, InterpolationMode) and interpolation in _MODES:
        return _MODES[interpolation]
    name = getattr(interpolation, "name", str(interpolation)).lower()
    if name not in FILTER_SUPPORT:
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
