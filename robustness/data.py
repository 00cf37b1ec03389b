"""Evaluation sets mapped by class folder name: ImageNet val, ImageNet-A, ImageNet-O and the
in-distribution subset of ImageNet val for ImageNet-O, or the same three roles (val, shifted, OOD)
for any other label space given as a list of class folder names (:func:`custom_label_space`); and
ImageNet-R (200 classes), ImageNet-Sketch (1000), ImageNet-V2 (folders named by class index 0-999)
and ImageNet-C (ROOT/<corruption>/<severity>/<wnid>/, every folder in one set, :func:`imagenet_c`).

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from timm.data.readers.img_extensions import get_img_extensions

from pretrain.data import RobustImageDataset
from pretrain.data.transforms import eval_transform
from pretrain.errors import ConfigError, InputNotFoundError

from .corruptions import CORRUPTIONS, EXTRA_CORRUPTIONS, SEVERITIES

META = Path(__file__).parent / "meta"
_logger = logging.getLogger(__name__)


def read_list(name: str) -> List[str]:
    return (META / name).read_text().split()


IMAGENET_WNIDS = read_list("imagenet1k_wnids.txt")
IMAGENET_A_WNIDS = read_list("imagenet_a_wnids.txt")
IMAGENET_A_INDICES = [int(i) for i in read_list("imagenet_a_indices.txt")]
IMAGENET_O_WNIDS = read_list("imagenet_o_wnids.txt")
IMAGENET_O_INDICES = [int(i) for i in read_list("imagenet_o_indices.txt")]
IMAGENET_R_WNIDS = read_list("imagenet_r_wnids.txt")
IMAGENET_R_INDICES = [int(i) for i in read_list("imagenet_r_indices.txt")]
IMAGENET_C_SIZE = 224  # every ImageNet-C image: the reference evaluates them as they are


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


@dataclass
class CorruptionSet(EvalSet):
    """Every (corruption, severity) folder of ImageNet-C in one dataset, so one loader reads them all:
    a label is ``group * len(classes) + class``, ``groups[group]`` its (corruption, severity)."""

    groups: List[Tuple[str, int]] = field(default_factory=list)


class FolderFileReader:
    """A timm-style reader (``reader[i]`` -> (open file, label)) of image files listed folder by folder
    into numpy arrays rather than Python objects: ImageNet-C's 4.75 M files take some 150 MB, which
    forked loader workers share untouched (a list of path strings would be copied into each of them
    as reference counts change)."""

    def __init__(self, root: Path, folders: List[str], labels: List[int], names: List[np.ndarray]) -> None:
        self.root = str(root)
        self.folders = folders
        self.labels = labels
        self.folder_of = np.repeat(np.arange(len(folders), dtype=np.int32), [len(n) for n in names])
        self.names = np.concatenate(names) if names else np.array([], dtype="S1")

    def __len__(self) -> int:
        return len(self.names)

    def filename(self, index: int) -> str:
        return os.path.join(self.root, self.folders[self.folder_of[index]], self.names[index].decode())

    def __getitem__(self, index: int):
        return open(self.filename(index), "rb"), self.labels[self.folder_of[index]]


def _image_names(folder: Path) -> np.ndarray:
    """Sorted image file names of ``folder`` as bytes (os.scandir on a bytes path yields bytes names)."""
    extensions = tuple(ext.encode() for ext in get_img_extensions())
    return np.array(sorted(entry.name for entry in os.scandir(bytes(folder)) if entry.is_file()
                           and entry.name.lower().endswith(extensions)), dtype="S")


def _subfolders(root: Path) -> List[str]:
    return sorted(entry.name for entry in os.scandir(root) if entry.is_dir())


def _class_folders(root: Path, allowed: Optional[Sequence[str]], what: str, hint: str = "",
                   unit: str = "class") -> List[str]:
    """Sorted class folders of ``root`` (folders of another ``unit``: ImageNet-C's corruptions and
    severities); each must be one of ``allowed`` (None: any name)."""
    example = allowed[0] if allowed else f"<{unit}>"
    units = {"class": "classes", "severity": "severities"}.get(unit, f"{unit}s")
    if not root.is_dir():
        raise InputNotFoundError(f"{what} root {str(root)!r} does not exist; expected one folder per {unit}, "
                                f"e.g. {root}/{example}/*.JPEG")
    folders = _subfolders(root)
    if not folders:
        raise InputNotFoundError(f"{what} root {str(root)!r} holds no {unit} folders (expected folders such as "
                                f"{example})")
    if allowed is None:
        return folders
    unknown = sorted(set(folders) - set(allowed))
    if unknown:
        raise ConfigError(f"{what} root {str(root)!r} has folders that are not {what} {units}: {unknown[:10]}"
                         f"{' ...' if len(unknown) > 10 else ''}{hint}")
    return folders


def _dataset(root: Path, class_to_index: Dict[str, int], transform) -> RobustImageDataset:
    return RobustImageDataset(str(root), transform, class_map=class_to_index)


def val_set(root, space: LabelSpace, transform=None, what: str = "val") -> EvalSet:
    root = Path(root)
    _class_folders(root, space.classes, what)
    mapping = {name: index for index, name in enumerate(space.classes)}
    return EvalSet("val", _dataset(root, mapping, transform or reference_transform()), space.classes, None,
                   title=what)


def subset_set(name: str, root, classes: List[str], indices: Optional[List[int]], transform=None,
               what: str = "subset") -> EvalSet:
    """A set over a subset of the model's classes (ImageNet-A, ImageNet-R): labels are positions in
    ``classes``, whose logit columns ``indices`` are sliced out before softmax."""
    root = Path(root)
    _class_folders(root, classes, what)
    mapping = {folder: index for index, folder in enumerate(classes)}
    return EvalSet(name, _dataset(root, mapping, transform or reference_transform()), classes, indices, title=what)


def shifted_set(root, space: LabelSpace, transform=None, what: str = "shifted") -> EvalSet:
    """ImageNet-A and the like, in the shifted label space."""
    return subset_set("shifted", root, space.shifted_classes, space.shifted_indices, transform, what)


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


def imagenet_r(root, transform=None) -> EvalSet:
    """ImageNet-R: labels are positions in its 200-class list; logits are sliced to its 200 columns."""
    return subset_set("imagenet_r", root, IMAGENET_R_WNIDS, IMAGENET_R_INDICES, transform, "ImageNet-R")


def imagenet_sketch(root, transform=None) -> EvalSet:
    """ImageNet-Sketch: folders named by wnid, all 1000 classes."""
    root = Path(root)
    _class_folders(root, IMAGENET_WNIDS, "ImageNet-Sketch")
    mapping = {name: index for index, name in enumerate(IMAGENET_WNIDS)}
    return EvalSet("sketch", _dataset(root, mapping, transform or reference_transform()), IMAGENET_WNIDS, None,
                   title="ImageNet-Sketch")


def imagenet_v2(root, transform=None) -> EvalSet:
    """ImageNet-V2 (matched-frequency, threshold-0.7 or top-images): its folders are named by class
    index, 0 to 999 in the standard order, not by wnid."""
    root = Path(root)
    indices = [str(index) for index in range(len(IMAGENET_WNIDS))]
    _class_folders(root, indices, "ImageNet-V2",
                   hint=" (ImageNet-V2's folders are class indices 0-999, not wnids: the root is the folder that "
                        "holds them, e.g. imagenetv2-matched-frequency-format-val)")
    mapping = {name: int(name) for name in indices}
    return EvalSet("v2", _dataset(root, mapping, transform or reference_transform()), IMAGENET_WNIDS, None,
                   title="ImageNet-V2")


def imagenet_c(root, transform=None) -> CorruptionSet:
    """ImageNet-C, ROOT/<corruption>/<severity>/<wnid>/*.JPEG: any of the 15 corruptions and the 4
    extras, any of severities 1-5. Every folder name is checked (a corruption, a severity, a wnid: one
    error names the first wrong level), and one image of each severity folder must be 224 x 224, the
    size the reference evaluates without resizing."""
    root = Path(root)
    known = (*CORRUPTIONS, *EXTRA_CORRUPTIONS)
    layout = f"expected {root}/<corruption>/<severity>/<wnid>/*.JPEG, e.g. {root}/gaussian_noise/3/{IMAGENET_WNIDS[0]}/"
    corruptions = _class_folders(root, known, "ImageNet-C", unit="corruption", hint=(
        f" (corruptions: {', '.join(known)}; the folders of the category archives noise, blur, weather, digital "
        f"and extra go side by side under one root; {layout})"))
    class_index = {wnid: index for index, wnid in enumerate(IMAGENET_WNIDS)}
    groups, folders, labels, names = [], [], [], []
    for corruption in sorted(corruptions, key=known.index):
        severities = _class_folders(root / corruption, [str(s) for s in SEVERITIES], "ImageNet-C",
                                    unit="severity", hint=f" (severities 1-5; {layout})")
        for severity in sorted(severities, key=int):
            folder = root / corruption / severity
            wnids = _class_folders(folder, IMAGENET_WNIDS, "ImageNet-C")
            group_names = [_image_names(folder / wnid) for wnid in wnids]
            if not any(len(n) for n in group_names):
                raise InputNotFoundError(f"ImageNet-C folder {str(folder)!r} holds no images ({layout})")
            first = next(folder / wnid / n[0].decode() for wnid, n in zip(wnids, group_names) if len(n))
            with Image.open(first) as image:
                if image.size != (IMAGENET_C_SIZE, IMAGENET_C_SIZE):
                    raise ConfigError(f"ImageNet-C image {first} is {image.width}x{image.height}: ImageNet-C's images "
                                      f"are {IMAGENET_C_SIZE}x{IMAGENET_C_SIZE}, evaluated without resizing as the "
                                      f"reference does (is this Tiny ImageNet-C, or a re-generation at another size?)")
            group = len(groups)
            groups.append((corruption, int(severity)))
            for wnid, wnid_names in zip(wnids, group_names):
                folders.append(f"{corruption}/{severity}/{wnid}")
                labels.append(group * len(IMAGENET_WNIDS) + class_index[wnid])
                names.append(wnid_names)
    reader = FolderFileReader(root, folders, labels, names)
    dataset = RobustImageDataset(str(root), transform or corruption_transform(), reader=reader)
    return CorruptionSet("imagenet_c", dataset, IMAGENET_WNIDS, None, title="ImageNet-C", groups=groups)


def corruption_transform():
    """ImageNet-C's evaluation: the 224-px images as they are, in [0, 1] (the reference's
    CenterCrop(224) is the identity on them). Written as a resize to 224 and a centre crop, which
    leave a 224-px image untouched on both data paths (torchvision returns it as it is; the device's
    PIL-exact resampling at scale 1 has one tap of weight 1), so that the GPU path has a plan for it;
    the interpolation never acts."""
    return eval_transform(IMAGENET_C_SIZE, "bilinear", 1.0)


def imagenet_o(root, transform=None) -> EvalSet:
    """ImageNet-O's OOD images, in folders named by their wnids."""
    return ood_set(root, IMAGENET, transform, "ImageNet-O")


def imagenet_o_in_distribution(val_root, transform=None) -> EvalSet:
    """The ImageNet val images of ImageNet-O's 200 classes (10,000 on the full val set)."""
    return ood_in_distribution(val_root, IMAGENET, transform, "ImageNet val")
