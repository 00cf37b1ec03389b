"""Evaluation sets mapped by wnid: ImageNet val, ImageNet-A, ImageNet-O and the in-distribution
subset of ImageNet val for ImageNet-O.

Folders are matched to classes by their wnid name, never by ImageFolder's own numbering (a
partial copy of ImageNet-A would otherwise shift every label). A folder whose name is not a class
of the set is an error that names it. Images come out as float tensors in [0, 1] after resize 256 /
centre crop 224 (the reference protocol); normalisation happens on the device, after occlusion.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from torchvision import transforms

from pretrain.data import RobustImageDataset

META = Path(__file__).parent / "meta"
_logger = logging.getLogger(__name__)


def read_list(name: str) -> List[str]:
    return (META / name).read_text().split()


IMAGENET_WNIDS = read_list("imagenet1k_wnids.txt")
IMAGENET_A_WNIDS = read_list("imagenet_a_wnids.txt")
IMAGENET_A_INDICES = [int(i) for i in read_list("imagenet_a_indices.txt")]
IMAGENET_O_WNIDS = read_list("imagenet_o_wnids.txt")
IMAGENET_O_INDICES = [int(i) for i in read_list("imagenet_o_indices.txt")]


def eval_transform(resize: int = 256, crop: int = 224) -> transforms.Compose:
    """Resize the shorter side, centre crop, to a [0, 1] tensor (no normalisation)."""
    return transforms.Compose([
        transforms.Resize(resize, interpolation=transforms.InterpolationMode.BILINEAR),
        transforms.CenterCrop(crop),
        transforms.ToTensor(),
    ])


@dataclass
class EvalSet:
    """A dataset plus what its labels mean.

    logit_indices: the columns of the 1000-way logits that form this set's label space (None: all).
    labels index that label space (positions in ``classes``); ``is_ood`` marks OOD images.
    """

    name: str
    dataset: RobustImageDataset
    classes: List[str]
    logit_indices: Optional[List[int]]
    is_ood: bool = False


def _class_folders(root: Path, allowed: Sequence[str], what: str) -> List[str]:
    if not root.is_dir():
        raise FileNotFoundError(f"{what} root {str(root)!r} does not exist; expected one folder per class wnid, "
                                f"e.g. {root}/{allowed[0]}/*.JPEG")
    folders = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    if not folders:
        raise FileNotFoundError(f"{what} root {str(root)!r} holds no class folders (expected wnid folders such as "
                                f"{allowed[0]})")
    unknown = sorted(set(folders) - set(allowed))
    if unknown:
        raise ValueError(f"{what} root {str(root)!r} has folders that are not {what} classes: {unknown[:10]}"
                         f"{' ...' if len(unknown) > 10 else ''}")
    return folders


def _dataset(root: Path, class_to_index: Dict[str, int], transform) -> RobustImageDataset:
    return RobustImageDataset(str(root), transform, class_map=class_to_index)


def imagenet_val(root, transform=None) -> EvalSet:
    root = Path(root)
    _class_folders(root, IMAGENET_WNIDS, "ImageNet val")
    mapping = {wnid: index for index, wnid in enumerate(IMAGENET_WNIDS)}
    return EvalSet("imagenet_val", _dataset(root, mapping, transform or eval_transform()), IMAGENET_WNIDS, None)


def imagenet_a(root, transform=None) -> EvalSet:
    """ImageNet-A: labels are positions in the 200-class list; logits are sliced to its 200 columns."""
    root = Path(root)
    _class_folders(root, IMAGENET_A_WNIDS, "ImageNet-A")
    mapping = {wnid: index for index, wnid in enumerate(IMAGENET_A_WNIDS)}
    return EvalSet("imagenet_a", _dataset(root, mapping, transform or eval_transform()), IMAGENET_A_WNIDS,
                   IMAGENET_A_INDICES)


def imagenet_o(root, transform=None) -> EvalSet:
    """ImageNet-O's OOD images (their folder labels are unused; every image is OOD)."""
    root = Path(root)
    _class_folders(root, IMAGENET_O_WNIDS, "ImageNet-O")
    mapping = {wnid: index for index, wnid in enumerate(IMAGENET_O_WNIDS)}
    return EvalSet("imagenet_o", _dataset(root, mapping, transform or eval_transform()), IMAGENET_O_WNIDS,
                   IMAGENET_O_INDICES, is_ood=True)


def imagenet_o_in_distribution(val_root, transform=None) -> EvalSet:
    """The ImageNet val images of ImageNet-O's 200 classes (10,000 on the full val set)."""
    root = Path(val_root)
    folders = _class_folders(root, IMAGENET_WNIDS, "ImageNet val")
    missing = sorted(set(IMAGENET_O_WNIDS) - set(folders))
    if missing:
        _logger.warning("ImageNet val root %s lacks %d of ImageNet-O's 200 classes (e.g. %s): the in-distribution "
                        "set is incomplete and AUPR is not comparable with published numbers", root, len(missing),
                        missing[:5])
    mapping = {wnid: index for index, wnid in enumerate(IMAGENET_O_WNIDS)}
    return EvalSet("imagenet_o_in_distribution", _dataset(root, mapping, transform or eval_transform()),
                   IMAGENET_O_WNIDS, IMAGENET_O_INDICES)


def labels_of(dataset: RobustImageDataset) -> torch.Tensor:
    """All labels of a dataset, read from its index (no image is decoded)."""
    reader = dataset.reader
    targets = getattr(reader, "targets", None)
    if targets is None:
        targets = [target for _, target in reader.samples]
    return torch.as_tensor(list(targets))
