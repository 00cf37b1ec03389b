"""Evaluation sets mapped by class folder name: ImageNet val, ImageNet-A, ImageNet-O and the
in-distribution subset of ImageNet val for ImageNet-O, or the same three roles (val, shifted, OOD)
for any other label space given as a list of class folder names (:func:`custom_label_space`).

Folders are matched to classes by their name (the wnid for ImageNet), never by ImageFolder's own
numbering (a partial copy of ImageNet-A would otherwise shift every label). A folder whose name is
not a class of the set is an error that names it. Images come out as float tensors in [0, 1]; the
report gives each model its own evaluation transform (``LoadedModel.eval_transform``), the sets'
default is the reference protocol's bilinear resize 256 / centre crop 224. Normalisation happens on
the device, after occlusion.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from pretrain.data import RobustImageDataset
from pretrain.data.transforms import eval_transform
from pretrain.errors import ConfigError, InputNotFoundError

META = Path(__file__).parent / "meta"
_logger = logging.getLogger(__name__)


def read_list(name: str) -> List[str]:
    return (META / name).read_text().split()


IMAGENET_WNIDS = read_list("imagenet1k_wnids.txt")
IMAGENET_A_WNIDS = read_list("imagenet_a_wnids.txt")
IMAGENET_A_INDICES = [int(i) for i in read_list("imagenet_a_indices.txt")]
IMAGENET_O_WNIDS = read_list("imagenet_o_wnids.txt")
IMAGENET_O_INDICES = [int(i) for i in read_list("imagenet_o_indices.txt")]


@dataclass(frozen=True)
class LabelSpace:
    """The classes a model predicts (folder names in logit order) and the label spaces of the
    shifted set (ImageNet-A: 200 classes) and of the OOD benchmark's in-distribution images
    (ImageNet-O: 200 classes); ``*_indices`` are their logit columns (None: all of them)."""

    name: str
    classes: List[str]
    shifted_classes: List[str]
    shifted_indices: Optional[List[int]]
    ood_classes: List[str]
    ood_indices: Optional[List[int]]


def custom_label_space(classes: Sequence[str]) -> LabelSpace:
    """A label space of one's own (class folder names in logit order): the shifted set and the OOD
    benchmark's in-distribution images use all of its classes; any folder name holds OOD images."""
    classes = list(classes)
    repeated = sorted({name for name in classes if classes.count(name) > 1})
    if not classes or repeated:
        raise ConfigError(f"a class list needs distinct names, at least one: repeated {repeated}" if classes
                         else "a class list needs distinct names, at least one: the list is empty")
    return LabelSpace("custom", classes, classes, None, classes, None)


def read_class_list(path) -> LabelSpace:
    """``path``: one class folder name per line, in the order of the model's outputs."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"class list {path} does not exist (one class folder name per line, in logit order)")
    return custom_label_space([line.strip() for line in path.read_text().splitlines() if line.strip()])


def reference_transform(input_size: int = 224):
    """The reference code's evaluation: bilinear resize to input / 0.875, centre crop, [0, 1] tensor."""
    return eval_transform(input_size, "bilinear", 0.875)


@dataclass
class EvalSet:
    """A dataset plus what its labels mean.

    logit_indices: the columns of the model's logits that form this set's label space (None: all).
    labels index that label space (positions in ``classes``); ``is_ood`` marks OOD images.
    """

    name: str
    dataset: RobustImageDataset
    classes: List[str]
    logit_indices: Optional[List[int]]
    is_ood: bool = False
    title: str = ""  # the name the report and progress bars show


def _class_folders(root: Path, allowed: Optional[Sequence[str]], what: str) -> List[str]:
    """Sorted class folders of ``root``; each must be one of ``allowed`` (None: any name)."""
    example = allowed[0] if allowed else "<class>"
    if not root.is_dir():
        raise InputNotFoundError(f"{what} root {str(root)!r} does not exist; expected one folder per class, "
                                f"e.g. {root}/{example}/*.JPEG")
    folders = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    if not folders:
        raise InputNotFoundError(f"{what} root {str(root)!r} holds no class folders (expected folders such as "
                                f"{example})")
    if allowed is None:
        return folders
    unknown = sorted(set(folders) - set(allowed))
    if unknown:
        raise ConfigError(f"{what} root {str(root)!r} has folders that are not {what} classes: {unknown[:10]}"
                         f"{' ...' if len(unknown) > 10 else ''}")
    return folders


def _dataset(root: Path, class_to_index: Dict[str, int], transform) -> RobustImageDataset:
    return RobustImageDataset(str(root), transform, class_map=class_to_index)


def val_set(root, space: LabelSpace, transform=None, what: str = "val") -> EvalSet:
    root = Path(root)
    _class_folders(root, space.classes, what)
    mapping = {name: index for index, name in enumerate(space.classes)}
    return EvalSet("val", _dataset(root, mapping, transform or reference_transform()), space.classes, None,
                   title=what)


def shifted_set(root, space: LabelSpace, transform=None, what: str = "shifted") -> EvalSet:
    """ImageNet-A and the like: labels are positions in the shifted label space, whose logit
    columns are sliced out before softmax."""
    root = Path(root)
    _class_folders(root, space.shifted_classes, what)
    mapping = {name: index for index, name in enumerate(space.shifted_classes)}
    return EvalSet("shifted", _dataset(root, mapping, transform or reference_transform()), space.shifted_classes,
                   space.shifted_indices, title=what)


def ood_set(root, space: LabelSpace, transform=None, what: str = "OOD") -> EvalSet:
    """OOD images (their folder labels are unused; every image is OOD). ImageNet-O's folders must be
    its wnids; with a custom label space any folder names are accepted."""
    root = Path(root)
    if space.name == "imagenet":
        folders = _class_folders(root, IMAGENET_O_WNIDS, what)
    else:
        folders = _class_folders(root, None, what)
    mapping = {name: index for index, name in enumerate(folders)}
    return EvalSet("ood", _dataset(root, mapping, transform or reference_transform()), space.ood_classes,
                   space.ood_indices, is_ood=True, title=what)


def ood_in_distribution(val_root, space: LabelSpace, transform=None, what: str = "val") -> EvalSet:
    """The val images of the OOD benchmark's in-distribution classes (for ImageNet-O, the 10,000
    ImageNet val images of its 200 classes)."""
    root = Path(val_root)
    folders = _class_folders(root, space.classes, what)
    missing = sorted(set(space.ood_classes) - set(folders))
    if missing:
        _logger.warning("%s root %s lacks %d of the OOD benchmark's %d in-distribution classes (e.g. %s): the "
                        "in-distribution set is incomplete and AUPR is not comparable with published numbers",
                        what, root, len(missing), len(space.ood_classes), missing[:5])
    mapping = {name: index for index, name in enumerate(space.ood_classes)}
    return EvalSet("ood_in_distribution", _dataset(root, mapping, transform or reference_transform()), space.ood_classes,
                   space.ood_indices, title=what)


IMAGENET = LabelSpace("imagenet", IMAGENET_WNIDS, IMAGENET_A_WNIDS, IMAGENET_A_INDICES, IMAGENET_O_WNIDS,
                      IMAGENET_O_INDICES)


def imagenet_val(root, transform=None) -> EvalSet:
    return val_set(root, IMAGENET, transform, "ImageNet val")


def imagenet_a(root, transform=None) -> EvalSet:
    """ImageNet-A: labels are positions in the 200-class list; logits are sliced to its 200 columns."""
    return shifted_set(root, IMAGENET, transform, "ImageNet-A")


def imagenet_o(root, transform=None) -> EvalSet:
    """ImageNet-O's OOD images, in folders named by their wnids."""
    return ood_set(root, IMAGENET, transform, "ImageNet-O")


def imagenet_o_in_distribution(val_root, transform=None) -> EvalSet:
    """The ImageNet val images of ImageNet-O's 200 classes (10,000 on the full val set)."""
    return ood_in_distribution(val_root, IMAGENET, transform, "ImageNet val")
