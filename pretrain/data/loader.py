"""The one place where a data pipeline is chosen and its loader built, for pretraining and the
robustness report alike.

- 'cpu': timm's transforms in the loader workers (:mod:`.folders`, :mod:`.transforms`);
- 'gpu': the workers read file bytes and draw each image's parameters, the device decodes (nvjpeg) and
  augments whole batches one batch ahead of training (:mod:`.gpu`).

:func:`choose_pipeline` resolves what the user asked for ('auto' takes the GPU path where nvjpeg works
and the transforms have a device plan); :func:`create_loader` builds the loader of either path.
"""
from __future__ import annotations

import logging
import os
from typing import Callable, Sequence

import torch
from torch.utils.data import DataLoader, DistributedSampler

from ..errors import ConfigError
from .folders import RobustImageDataset, ShardSampler, collate, seed_worker
from .gpu.decode import EncodedImageDataset, collate_encoded, gpu_decode_available
from .gpu.plan import UnsupportedTransform, plan_from_transform
from .gpu.prefetch import DevicePrefetcher

_logger = logging.getLogger(__name__)

PIPELINES = ("auto", "cpu", "gpu")

# nvjpeg spreads a batch over many streams of its own; with CUDA's default of 8 hardware queues they wait
# behind training's kernels (docs/gpu_data_path.md, "Hardware queues").
HARDWARE_QUEUES = 32


def reserve_hardware_queues(data_pipeline: str) -> None:
    """Asks CUDA for its maximum of 32 hardware work queues (CUDA_DEVICE_MAX_CONNECTIONS) unless the data
    pipeline is 'cpu' or the variable is set already. CUDA reads it when the driver starts, so call this
    before anything touches CUDA: ``torch.cuda.is_available()`` starts the driver too, and only a started
    torch CUDA state is detected (and warned about)."""
    if data_pipeline == "cpu" or "CUDA_DEVICE_MAX_CONNECTIONS" in os.environ:
        return
    if torch.cuda.is_initialized():
        _logger.warning("CUDA started before the GPU data path could ask for %d hardware queues: decoding will "
                        "wait behind training; set CUDA_DEVICE_MAX_CONNECTIONS=%d", HARDWARE_QUEUES, HARDWARE_QUEUES)
        return
    os.environ["CUDA_DEVICE_MAX_CONNECTIONS"] = str(HARDWARE_QUEUES)


def choose_pipeline(requested: str, device: torch.device, transforms: Sequence[Callable] = (),
                    from_files: bool = True) -> str:
    """'cpu' or 'gpu' for ``requested`` ('auto', 'cpu' or 'gpu') on ``device``. The GPU path needs image
    files (``from_files``: not a dataset decoded in memory), nvjpeg working on the device and a device
    plan for each of ``transforms``: 'auto' falls back to the CPU path where one is missing, 'gpu' raises."""
    if requested not in PIPELINES:
        raise ConfigError(f"data pipeline must be auto, cpu or gpu, got {requested!r}")
    if requested == "cpu":
        return "cpu"
    if not from_files:
        if requested == "gpu":
            raise ConfigError("--data-pipeline gpu decodes image files on the device, but this dataset holds decoded "
                              "images (--dataset torch/...): use --data-pipeline cpu or auto")
        return "cpu"
    available = gpu_decode_available(device)
    if requested == "gpu" and device.type == "cuda" and not available:
        raise ConfigError("--data-pipeline gpu needs a torchvision whose nvjpeg decoding works on this GPU (a test "
                           "decode failed, see the warning above); use --data-pipeline cpu")
    pipeline = "gpu" if available or requested == "gpu" else "cpu"
    if pipeline == "gpu":
        try:
            for transform in transforms:
                plan_from_transform(transform)
        except UnsupportedTransform as error:
            if requested != "auto":
                raise
            _logger.warning("the GPU data path cannot run this recipe (%s): using the CPU path", error)
            pipeline = "cpu"
    return pipeline


def create_loader(dataset: RobustImageDataset, pipeline: str, device: torch.device, batch_size: int, workers: int,
                  training: bool = False, seed: int = 0, rank: int = 0, world_size: int = 1,
                  pin_memory: bool = True):
    """This process's loader of ``dataset`` on the chosen ``pipeline`` ('cpu' or 'gpu'), yielding
    ``(images, labels, bad)``.

    Training: shuffled by a :class:`DistributedSampler` seeded with ``seed``, incomplete last batch
    dropped; call :func:`set_epoch` before each epoch, so that the order and the workers' seeds depend
    only on (seed, epoch). Evaluation: rank r takes images r, r + W, ... (:class:`.folders.ShardSampler`),
    so summed metrics count every image once."""
    if pipeline not in ("cpu", "gpu"):
        raise ValueError(f"pipeline must be cpu or gpu (choose_pipeline resolves auto), got {pipeline!r}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    collate_fn = collate
    if pipeline == "gpu":
        dataset, collate_fn = EncodedImageDataset.from_dataset(dataset), collate_encoded
    common = dict(batch_size=batch_size, num_workers=workers, pin_memory=pin_memory and torch.cuda.is_available(),
                  collate_fn=collate_fn, worker_init_fn=seed_worker)
    if training:
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                                     drop_last=True)
        loader = DataLoader(dataset, sampler=sampler, drop_last=True, generator=torch.Generator(), **common)
        if len(loader) == 0:
            raise ValueError(f"{len(dataset)} training images cannot fill one batch of {batch_size} per process "
                             f"x {world_size} processes")
    else:
        loader = DataLoader(dataset, sampler=ShardSampler(len(dataset), rank, world_size), **common)
    if pipeline == "gpu":
        return DevicePrefetcher(loader, device)
    return loader


def set_epoch(loader, epoch: int) -> None:
    """Sets a training loader of :func:`create_loader` to ``epoch``: its sampler's order and the
    generator its workers' seeds come from."""
    base = getattr(loader, "loader", loader)  # the DataLoader inside a DevicePrefetcher
    base.sampler.set_epoch(epoch)
    base.generator.manual_seed(base.sampler.seed * 100003 + epoch)
