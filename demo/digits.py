"""The demo's datasets, all derived from scikit-learn's bundled handwritten digits (1,797 real 8x8
scans, UCI ML hand-written digits, CC BY 4.0), deterministic for a seed:

- classification (ImageNet-style folders): ``train/`` and ``val/`` (the held-out images) of the
  pretraining classes 0-7, ``rotated/`` (the val images rotated by 25-50 degrees either way: the
  shifted set) and ``ood/`` (every image of the classes 8 and 9, never seen in pretraining), plus
  ``classes.txt``;
- canvases: 96x96 images with three to four digits at 24-40 px, laid out as Pascal Context
  (``VOCdevkit/VOC2010``: per-pixel class = digit + 1, background 0, ignored as Pascal Context 59
  does) and as COCO instances (``coco/``: boxes and polygon-free RLE masks per digit). Train canvases
  use train-split digits only, val canvases val-split digits only.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

OOD_CLASSES = (8, 9)
PRETRAIN_CLASSES = tuple(digit for digit in range(10) if digit not in OOD_CLASSES)
DIGIT_NAMES = tuple(str(digit) for digit in range(10))
CANVAS_SIZE = 96
DIGIT_PIXELS = (24, 40)  # side of a pasted digit
INK_THRESHOLD = 0.35  # share of full intensity above which a pixel belongs to the digit


@dataclass(frozen=True)
class DigitSplit:
    images: np.ndarray  # (N, 8, 8) in [0, 1]
    labels: np.ndarray  # (N,)


def load_split(seed: int, val_fraction: float = 0.25) -> Tuple[DigitSplit, DigitSplit]:
    """All 1,797 digits split into train / val, stratified by class, fixed by ``seed``."""
    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0
    train_x, val_x, train_y, val_y = train_test_split(images, digits.target, test_size=val_fraction,
                                                      random_state=seed, stratify=digits.target)
    return DigitSplit(train_x, train_y), DigitSplit(val_x, val_y)


def render(digit: np.ndarray, size: int) -> Image.Image:
    """An 8x8 scan as a white-on-black RGB image of ``size`` pixels (bicubic upsampling)."""
    gray = Image.fromarray(np.clip(digit * 255.0, 0, 255).astype(np.uint8), mode="L")
    return gray.resize((size, size), Image.BICUBIC).convert("RGB")


def _save_folder(root: Path, split: DigitSplit, keep: Sequence[int], size: int, prefix: str,
                 rotations: np.ndarray | None = None) -> int:
    count = 0
    for index, (digit, label) in enumerate(zip(split.images, split.labels)):
        if label not in keep:
            continue
        image = render(digit, size)
        if rotations is not None:
            image = image.rotate(float(rotations[index]), resample=Image.BILINEAR)
        folder = root / DIGIT_NAMES[label]
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{prefix}_{index:04d}.png")
        count += 1
    return count


def write_classification(root: Path, seed: int, size: int = 32, limit: int = 0) -> Dict[str, int]:
    """``root/{train,val,rotated,ood}/<digit>/*.png`` and ``root/classes.txt``; returns image counts.
    ``limit`` > 0 keeps only the first ``limit`` images of each split (for quick runs)."""
    train, val = load_split(seed)
    if limit:
        train, val = (DigitSplit(s.images[:limit], s.labels[:limit]) for s in (train, val))
    rng = np.random.default_rng(seed)
    angles = rng.uniform(25.0, 50.0, len(val.labels)) * rng.choice([-1.0, 1.0], len(val.labels))
    root = Path(root)
    counts = {
        "train": _save_folder(root / "train", train, PRETRAIN_CLASSES, size, "train"),
        "val": _save_folder(root / "val", val, PRETRAIN_CLASSES, size, "val"),
        "rotated": _save_folder(root / "rotated", val, PRETRAIN_CLASSES, size, "val", rotations=angles),
        "ood": (_save_folder(root / "ood", train, OOD_CLASSES, size, "train")
                + _save_folder(root / "ood", val, OOD_CLASSES, size, "val")),
    }
    (root / "classes.txt").write_text("\n".join(DIGIT_NAMES[c] for c in PRETRAIN_CLASSES) + "\n")
    return counts


@dataclass
class Canvas:
    image: np.ndarray  # (H, W, 3) uint8
    instances: List[Tuple[int, np.ndarray]]  # (digit, (H, W) bool mask)


def make_canvas(split: DigitSplit, rng: np.random.Generator, size: int = CANVAS_SIZE) -> Canvas:
    """Three or four digits at random sizes and places, not overlapping (their boxes are 2 px apart);
    a layout that leaves no room for the next digit is drawn again."""
    count = int(rng.integers(3, 5))
    while True:
        boxes = []
        taken = np.zeros((size, size), dtype=bool)
        for _attempt in range(200):
            side = int(rng.integers(DIGIT_PIXELS[0], DIGIT_PIXELS[1] + 1))
            top, left = (int(v) for v in rng.integers(0, size - side + 1, 2))
            if not taken[max(top - 2, 0):top + side + 2, max(left - 2, 0):left + side + 2].any():
                taken[top:top + side, left:left + side] = True
                boxes.append((top, left, side))
                if len(boxes) == count:
                    return _paste(split, rng, boxes, size)


def _paste(split: DigitSplit, rng: np.random.Generator, boxes: List[Tuple[int, int, int]], size: int) -> Canvas:
    image = np.zeros((size, size), dtype=np.float32)
    instances = []
    for top, left, side in boxes:
        index = int(rng.integers(len(split.labels)))
        digit = np.asarray(render(split.images[index], side).convert("L"), dtype=np.float32) / 255.0
        image[top:top + side, left:left + side] = digit
        mask = np.zeros((size, size), dtype=bool)
        mask[top:top + side, left:left + side] = digit > INK_THRESHOLD
        instances.append((int(split.labels[index]), mask))
    rgb = np.repeat((image * 255.0).round().astype(np.uint8)[..., None], 3, axis=2)
    return Canvas(rgb, instances)


def write_canvases(root: Path, seed: int, train_count: int = 400, val_count: int = 100) -> Dict[str, Path]:
    """Pascal Context and COCO layouts of the same canvases; returns their roots."""
    train, val = load_split(seed)
    rng = np.random.default_rng(seed + 1)
    root = Path(root)
    voc = root / "VOCdevkit" / "VOC2010"
    images_dir, labels_dir = voc / "JPEGImages", voc / "SegmentationClassContext"
    sets_dir = voc / "ImageSets" / "SegmentationContext"
    coco = root / "coco"
    for folder in (images_dir, labels_dir, sets_dir, coco / "annotations", coco / "train2017", coco / "val2017"):
        folder.mkdir(parents=True, exist_ok=True)
    categories = [{"id": digit + 1, "name": name, "supercategory": "digit"} for digit, name in enumerate(DIGIT_NAMES)]
    for split_name, split, count in (("train", train, train_count), ("val", val, val_count)):
        names, images, annotations = [], [], []
        for number in range(count):
            canvas = make_canvas(split, rng)
            name = f"digits_{split_name}_{number:05d}"
            label = np.zeros(canvas.image.shape[:2], dtype=np.uint8)
            for digit, mask in canvas.instances:
                label[mask] = digit + 1
            Image.fromarray(canvas.image).save(images_dir / f"{name}.jpg", quality=95)
            Image.fromarray(label).save(labels_dir / f"{name}.png")
            Image.fromarray(canvas.image).save(coco / f"{split_name}2017" / f"{name}.png")
            names.append(name)
            image_id = number + 1
            images.append({"id": image_id, "file_name": f"{name}.png", "height": CANVAS_SIZE, "width": CANVAS_SIZE})
            for digit, mask in canvas.instances:
                rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
                rows, cols = np.nonzero(mask)
                box = [float(cols.min()), float(rows.min()), float(cols.max() - cols.min() + 1),
                       float(rows.max() - rows.min() + 1)]
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": digit + 1,
                                    "bbox": box, "area": float(mask.sum()), "iscrowd": 0,
                                    "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()}})
        (sets_dir / f"{split_name}.txt").write_text("\n".join(names) + "\n")
        (coco / "annotations" / f"instances_{split_name}2017.json").write_text(json.dumps(
            {"images": images, "annotations": annotations, "categories": categories}))
    return {"pascal_context": voc, "coco": coco}
