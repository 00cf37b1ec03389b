"""Synthetic batches already on the device, for throughput measurements without disk or decoding."""
from __future__ import annotations

import torch


class SyntheticBatches:
    """``steps`` batches of random images and labels made once on the device, for throughput
    measurements without disk or decoding. Iterates like a training loader."""

    def __init__(self, batch_size: int, image_size: int, num_classes: int, steps: int, device: torch.device) -> None:
        generator = torch.Generator(device=device).manual_seed(0)
        self.images = torch.randn(batch_size, 3, image_size, image_size, device=device, generator=generator)
        self.labels = torch.randint(0, num_classes, (batch_size,), device=device, generator=generator)
        self.bad = torch.zeros(batch_size, dtype=torch.long)
        self.steps = steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        for _ in range(self.steps):
            yield self.images, self.labels, self.bad
