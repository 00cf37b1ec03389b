"""Image folders and tars through timm's readers, with bad-image skipping and counting, and the
evaluation shard sampler.

Layouts accepted for ``--data-path DIR`` (class folders are mapped in sorted order, the standard
ImageNet-1k indexing when the folders are wnids):

    DIR/train/<class>/<image>      DIR/val/<class>/<image>        (image folders)
    DIR/train.tar                  DIR/val.tar                    (tars of class folders or class tars)

``--dataset torch/NAME`` (CIFAR-10/100, MNIST, ... from a local root) reads a map-style dataset of timm's
``create_dataset`` instead (:class:`FactoryDataset`).

Unreadable or corrupt images are skipped with a warning and counted: the sample is replaced by the
next readable one so batches keep their shape, and the run aborts only once the skipped fraction
passes ``max_bad_fraction`` (see :class:`BadImageCounter`).
"""
from __future__ import annotations

import logging
import os
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image
from timm.data.readers import create_reader
from torch.utils.data import Dataset, IterableDataset, Sampler

from ..errors import InputNotFoundError

_logger = logging.getLogger(__name__)

EXPECTED_LAYOUT = """expected an ImageNet-style root:
  {root}/train/<class>/<image>   and   {root}/val/<class>/<image>
  (e.g. {root}/train/n01440764/n01440764_10026.JPEG, one folder per class)
or tar files:
  {root}/train.tar   and   {root}/val.tar   (each holding the class folders, or one tar per class)"""

# Consecutive unreadable files tolerated before a sample gives up looking for a replacement.
_MAX_CONSECUTIVE_BAD = 50


class DataLayoutError(InputNotFoundError):
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


def empty_class_folders(dataset: "RobustImageDataset") -> List[str]:
    """Class folders of a folder dataset that hold no images (the reader leaves them out, which
    would shift every later label)."""
    if not os.path.isdir(dataset.location):
        return []
    folders = {entry.name for entry in os.scandir(dataset.location) if entry.is_dir() and not entry.name.startswith(".")}
    return sorted(folders - set(dataset.class_to_idx))


class RobustImageDataset(Dataset):
    """timm's folder / tar reader with decoding that survives bad files.

    timm's own ImageDataset only guards ``Image.open``, which is lazy: a truncated JPEG then fails in
    the transform. Here the image is fully decoded inside the guard; a failure logs the file, and the
    next index is tried. Each returned item carries the number of files skipped to produce it.
    """

    def __init__(self, location: str, transform: Optional[Callable] = None, class_map: str = "", reader=None) -> None:
        """``reader``: a timm reader of ``location`` to share (another view of the same files)."""
        self.reader = reader if reader is not None else create_reader("", root=location, class_map=class_map)
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


class FactoryDataset(RobustImageDataset):
    """A map-style dataset of timm's ``create_dataset`` (``torch/cifar10``, ``torch/cifar100``,
    ``torch/mnist``, ``torch/image_folder``, ...) behind the interface of :class:`RobustImageDataset`:
    RGB PIL images through this object's transform, the same skip-and-count guard. Its images are
    decoded already (arrays in memory), so only the CPU data path reads it."""

    def __init__(self, name: str, root: str, split: str, transform: Optional[Callable] = None,
                 download: bool = False) -> None:
        from timm.data import create_dataset

        if not download and not os.path.isdir(root):
            raise DataLayoutError(f"--dataset {name}: root {root!r} does not exist (--dataset-download fetches the "
                                  f"dataset there)")
        try:
            self.source = create_dataset(name, root=root, split=split, download=download)
        except (RuntimeError, AssertionError, OSError, ValueError) as error:  # torchvision: "not found or corrupted"
            raise DataLayoutError(f"--dataset {name} could not read split {split!r} under {root!r}: {error}") from None
        if isinstance(self.source, IterableDataset):
            raise DataLayoutError(f"--dataset {name} is a streaming dataset: training needs indexable data (an "
                                  f"image folder, a tar, or a torch/NAME dataset)")
        self.source.transform = None  # ours is applied after the RGB conversion
        self.reader = None
        self.location = f"{name} {split} split at {root}"
        self.transform = transform
        if len(self.source) == 0:
            raise DataLayoutError(f"no images in {self.location}")

    @property
    def class_to_idx(self) -> Dict[str, int]:
        mapping = getattr(self.source, "class_to_idx", None)
        if mapping:
            return dict(mapping)
        classes = getattr(self.source, "classes", None)
        if not classes:
            raise DataLayoutError(f"{self.location} names no classes (no class_to_idx or classes attribute)")
        return {str(name): index for index, name in enumerate(classes)}

    def __len__(self) -> int:
        return len(self.source)

    def filename(self, index: int) -> str:
        return f"image {index} of {self.location}"

    def load(self, index: int) -> Tuple[Image.Image, int]:
        image, label = self.source[index]
        if not isinstance(image, Image.Image):
            raise TypeError(f"{self.location} gave a {type(image).__name__}, expected a PIL image")
        return image.convert("RGB"), int(label)


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
    """numpy's stream per worker (RandAugment draws its ops from it) from the worker's torch seed. The
    DataLoader seeds numpy too, but from another derivation of the same base seed: this one is kept so
    that the augmentation draws stay those of every run made so far."""
    np.random.seed(torch.initial_seed() % 2 ** 32)


def collate(batch: List[Tuple[torch.Tensor, int, int]]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    images, labels, bad = zip(*batch)
    return torch.stack(images), torch.tensor(labels), torch.tensor(bad)
