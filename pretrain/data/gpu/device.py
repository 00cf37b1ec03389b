"""Small device helpers of the GPU data path: host-to-device copies that do not wait, and whether
Triton kernels can run."""
from __future__ import annotations

import torch


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host -> device copy that does not wait for the stream: from pinned memory on CUDA."""
    if device.type == "cuda" and not tensor.is_pinned():
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


def triton_available(device: torch.device) -> bool:
    """Triton kernels need a CUDA device and the triton package (CUDA builds of torch ship it)."""
    if device.type != "cuda":
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True
