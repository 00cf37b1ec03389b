"""Applies an :class:`.plan.AugmentPlan` to a batch of decoded images on their device: resampling
(:mod:`.resample`), flip, the RandAugment / colour-jitter layers (one fused Triton kernel each on CUDA,
the plain-torch ops of :mod:`.ops` elsewhere), normalisation and random erasing."""
from __future__ import annotations

import hashlib
from typing import List, Tuple

import torch

from . import kernels
from .device import to_device, triton_available
from .ops import POINTWISE, affine_matrices, geometric, ramp
from .plan import GEOMETRIC, NO_OP, Op
from .resample import resample_boxes

ARGUMENT_TABLE_OPS = (Op.INVERT, Op.POSTERIZE, Op.SOLARIZE, Op.SOLARIZE_ADD)  # tables that need no pixels
PIXEL_TABLE_OPS = frozenset((Op.AUTO_CONTRAST, Op.EQUALIZE, Op.CONTRAST))


def batch_seed(params: torch.Tensor) -> int:
    """A 63-bit seed that is a function of a batch's (host) parameter table."""
    digest = hashlib.blake2b(params.contiguous().numpy().tobytes(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


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
        """One kernel per layer (:func:`.kernels.augment_layer`). Its tables and affine maps are made
        first: on the host those that depend only on an image's op and argument (sent in one copy each), on the device,
        in one more kernel, those that depend on the pixels (contrast means, autocontrast and equalize
        tables). A handful of launches per layer: the augment thread's host time is GIL time taken from
        the training thread."""
        host_ops = host_ops.long()
        present = set(host_ops.unique().tolist())
        if present == {NO_OP}:
            return x
        batch = len(x)
        luts = torch.arange(256, dtype=torch.uint8).repeat(batch, 3, 1)
        for op in ARGUMENT_TABLE_OPS:
            if op in present:
                index = (host_ops == op).nonzero().flatten()
                table = POINTWISE[op](ramp(len(index), luts.device), host_args[index].float())
                luts[index] = table.view(-1, 3, 256).to(torch.uint8)
        luts = to_device(luts, self.device)
        matrices = to_device(affine_matrices(host_ops, host_args, x.shape[-1]), self.device)
        means = torch.zeros(batch, device=x.device)
        ops = ops.int()
        if present & PIXEL_TABLE_OPS:
            kernels.pixel_tables(x, ops, luts, means)
        return kernels.augment_layer(x, ops, args.float(), means, luts, matrices, self.fill_levels,
                                     self.plan.interpolation)

    def _apply_layer(self, x: torch.Tensor, host_ops: torch.Tensor, host_args: torch.Tensor, ops: torch.Tensor,
                     args: torch.Tensor) -> torch.Tensor:
        """Each op runs once on the images that drew it (grouped on the host, no device read)."""
        host_ops = host_ops.long()
        groups: List[Tuple[object, torch.Tensor]] = []  # (op or "geometric", images)
        geometric_mask = torch.zeros_like(host_ops, dtype=torch.bool)
        for op in GEOMETRIC:
            geometric_mask |= host_ops == op
        if bool(geometric_mask.any()):
            groups.append(("geometric", geometric_mask.nonzero().flatten()))
        for op in POINTWISE:
            members = (host_ops == op).nonzero().flatten()
            if len(members):
                groups.append((op, members))
        if not groups:
            return x
        indices = self._indices_on_device([members for _, members in groups])
        x = x.clone()
        for (op, _), index in zip(groups, indices):
            part = x.index_select(0, index)
            if op == "geometric":
                part = geometric(part, ops.index_select(0, index), args.index_select(0, index), self.fill,
                                 self.plan.interpolation)
            else:
                part = POINTWISE[op](part, args.index_select(0, index).float())
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
