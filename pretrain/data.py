"""ImageNet train / val data through timm's readers and transform factories.

Layouts accepted for ``--data-path DIR`` (class folders are mapped in sorted order, the standard
ImageNet-1k indexing when the folders are wnids):

    DIR/train/<class>/<image>      DIR/val/<class>/<image>        (image folders)
    DIR/train.tar                  DIR/val.tar                    (tars of class folders or class tars)

Unreadable or corrupt images are skipped with a warning and counted: the sample is replaced by the
next readable one so batches keep their shape, and the run aborts only once the skipped fraction
passes ``max_bad_fraction`` (see :class:`BadImageCounter`).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config
from timm.data.readers import create_reader
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

_logger = logging.getLogger(__name__)

EXPECTED_LAYOUT = """expected an ImageNet-style root:
  {root}/train/<class>/<image>   and   {root}/val/<class>/<image>
  (e.g. {root}/train/n01440764/n01440764_10026.JPEG, one folder per class)
or tar files:
  {root}/train.tar   and   {root}/val.tar   (each holding the class folders, or one tar per class)"""

# Consecutive unreadable files tolerated before a sample gives up looking for a replacement.
_MAX_CONSECUTIVE_BAD = 50


class DataLayoutError(FileNotFoundError):
    """The data root does not look like an ImageNet-style dataset."""


def split_location(root: str, split: str) -> str:
    """Path of ``split`` ('train' / 'val') under ``root``, folder or tar; a layout error otherwise."""
    if not os.path.isdir(root):
        raise DataLayoutError(f"data root {root!r} does not exist or is not a folder; "
                              + EXPECTED_LAYOUT.format(root=root))
    folder, tar = os.path.join(root, split), os.path.join(root, f"{split}.tar")
    if os.path.isdir(folder):
        classes = [entry.name for entry in os.scandir(folder) if entry.is_dir() or entry.name.endswith(".tar")]
        if not classes:
            raise DataLayoutError(f"{folder!r} holds no class folders; " + EXPECTED_LAYOUT.format(root=root))
        return folder
    if os.path.isfile(tar):
        return tar
    raise DataLayoutError(f"found neither {folder!r} nor {tar!r}; " + EXPECTED_LAYOUT.format(root=root))


@dataclass
class Sample:
    image: torch.Tensor
    label: int
    bad: int  # unreadable files skipped to produce this sample


class RobustImageDataset(Dataset):
    """timm's folder / tar reader with decoding that survives bad files.

    timm's own ImageDataset only guards ``Image.open``, which is lazy: a truncated JPEG then fails in
    the transform. Here the image is fully decoded inside the guard; a failure logs the file, and the
    next index is tried. Each returned item carries the number of files skipped to produce it.
    """

    def __init__(self, location: str, transform: Optional[Callable] = None, class_map: str = "") -> None:
        self.reader = create_reader("", root=location, class_map=class_map)
        self.location = location
        self.transform = transform
        if len(self.reader) == 0:
            raise DataLayoutError(f"no images found under {location!r}")

    @property
    def class_to_idx(self) -> Dict[str, int]:
        mapping = getattr(self.reader, "class_to_idx", None) or getattr(self.reader, "class_name_to_idx")
        return dict(mapping)

    def __len__(self) -> int:
        return len(self.reader)

    def filename(self, index: int) -> str:
        return self.reader.filename(index)

    def load(self, index: int) -> Tuple[Image.Image, int]:
        file, label = self.reader[index]
        with Image.open(file) as image:
            image = image.convert("RGB")
            image.load()
        if hasattr(file, "close"):
            file.close()
        return image, label

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int, int]:
        for bad in range(_MAX_CONSECUTIVE_BAD):
            position = (index + bad) % len(self)
            try:
                image, label = self.load(position)
            except Exception as error:  # PIL raises many types for corrupt files
                _logger.warning("skipped unreadable image %s: %s", self.filename(position), error)
                continue
            if self.transform is not None:
                image = self.transform(image)
            return image, label, bad
        raise RuntimeError(f"{_MAX_CONSECUTIVE_BAD} consecutive unreadable images from "
                           f"{self.filename(index)!r} on in {self.location!r}: is the dataset intact?")


class BadImageCounter:
    """Counts skipped images against images read; raises past ``max_fraction``.

    The counts arrive with each batch from the loader workers, on the host, so counting costs no
    device synchronisation; ``check`` sums them over processes (on ``device``)."""

    def __init__(self, max_fraction: float, device: torch.device) -> None:
        if not 0.0 <= max_fraction <= 1.0:
            raise ValueError(f"max_bad_fraction must be in [0, 1], got {max_fraction}")
        self.max_fraction = max_fraction
        self.device = device
        self.bad = 0
        self.seen = 0

    def update(self, bad: torch.Tensor) -> None:
        self.bad += int(bad.sum())
        self.seen += bad.numel()

    def check(self, reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t) -> int:
        """Total skipped images over all processes; raises when their share is too large."""
        bad, seen = (int(v) for v in reduce(torch.tensor([self.bad, self.seen], device=self.device)).tolist())
        if seen and bad / (bad + seen) > self.max_fraction:
            raise RuntimeError(f"{bad} unreadable images against {seen} read ({bad / (bad + seen):.2%}), more than "
                               f"max_bad_fraction={self.max_fraction:.2%}: check the dataset (warnings name the files)")
        return bad


def build_transforms(config, model: torch.nn.Module) -> Tuple[Callable, Callable]:
    """DeiT train transform and resize/centre-crop eval transform from timm's factory."""
    data_config = resolve_data_config({"input_size": (3, config.input_size, config.input_size),
                                       "interpolation": config.interpolation,
                                       "crop_pct": config.eval_crop_pct}, model=model)
    train = create_transform(
        config.input_size, is_training=True, no_aug=config.no_aug, scale=tuple(config.crop_scale),
        auto_augment=config.auto_augment or None,
        color_jitter=config.color_jitter, re_prob=config.reprob, re_mode=config.remode, re_count=config.recount,
        interpolation=config.interpolation, mean=data_config["mean"], std=data_config["std"],
    )
    evaluation = create_transform(
        config.input_size, is_training=False, interpolation=config.interpolation,
        crop_pct=config.eval_crop_pct, mean=data_config["mean"], std=data_config["std"],
    )
    return train, evaluation


class ShardSampler(Sampler):
    """Evaluation sampler: rank r takes indices r, r + W, ... with no padding, so summed metrics count
    every image exactly once (DistributedSampler would repeat images to even out the shards)."""

    def __init__(self, size: int, rank: int, world_size: int) -> None:
        self.indices = list(range(rank, size, world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def seed_worker(worker_id: int) -> None:
    """torch and random are seeded per worker by the DataLoader; numpy (used by some transforms) is not."""
    np.random.seed(torch.initial_seed() % 2 ** 32)


def collate(batch: List[Tuple[torch.Tensor, int, int]]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    images, labels, bad = zip(*batch)
    return torch.stack(images), torch.tensor(labels), torch.tensor(bad)


def build_datasets(config, model: torch.nn.Module) -> Tuple[RobustImageDataset, RobustImageDataset]:
    train_tf, eval_tf = build_transforms(config, model)
    train = RobustImageDataset(split_location(config.data_path, "train"), train_tf, config.class_map)
    val = RobustImageDataset(split_location(config.data_path, "val"), eval_tf, config.class_map)
    classes = train.class_to_idx
    if len(classes) != config.num_classes:
        raise DataLayoutError(f"{train.location!r} has {len(classes)} class folders but num_classes="
                              f"{config.num_classes}; " + EXPECTED_LAYOUT.format(root=config.data_path))
    if val.class_to_idx != classes:
        missing = sorted(set(classes) ^ set(val.class_to_idx))[:5]
        raise DataLayoutError(f"train and val class folders differ (e.g. {missing}); "
                              + EXPECTED_LAYOUT.format(root=config.data_path))
    return train, val


def build_loaders(config, train: Dataset, val: Dataset, rank: int, world_size: int, collate_fn: Callable = collate,
                  ) -> Tuple[DataLoader, DataLoader, DistributedSampler, torch.Generator]:
    """Loaders whose order and worker seeds depend only on (seed, epoch): call
    ``train_sampler.set_epoch(e)`` and ``loader_generator.manual_seed(seed + e)`` before each epoch."""
    if config.batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {config.batch_size}")
    train_sampler = DistributedSampler(train, num_replicas=world_size, rank=rank, shuffle=True,
                                       seed=config.seed, drop_last=True)
    loader_generator = torch.Generator()
    pin_memory = config.pin_memory and torch.cuda.is_available()
    common = dict(num_workers=config.workers, pin_memory=pin_memory, collate_fn=collate_fn,
                  worker_init_fn=seed_worker)
    train_loader = DataLoader(train, batch_size=config.batch_size, sampler=train_sampler, drop_last=True,
                              generator=loader_generator, **common)
    if len(train_loader) == 0:
        raise ValueError(f"{len(train)} training images cannot fill one batch of {config.batch_size} per process "
                         f"x {world_size} processes")
    val_loader = DataLoader(val, batch_size=config.eval_batch_size or config.batch_size,
                            sampler=ShardSampler(len(val), rank, world_size), **common)
    return train_loader, val_loader, train_sampler, loader_generator


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
