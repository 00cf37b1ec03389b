"""Tiny dataset trees laid out exactly like Pascal Context (mmseg) and COCO (mmdet), built from
tests/data. What is real and what is generated:

- Pascal Context: the images are the real photos of docs/images, resized to 128x96; the
  label maps are generated (background 0 plus a few rectangles of Pascal Context classes).
- COCO: the annotations are the real instances of val2017 image 39769 (two cats, two remotes, a
  couch, a bed); the image file is the real photo chelsea.png (a cat, not the COCO image) resized
  to that image's 640x480 and saved under the COCO file name.
"""
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

DATA = Path(__file__).parent / "data"
PHOTOS_DIR = Path(__file__).parents[1] / "docs" / "images"
PHOTOS = sorted(PHOTOS_DIR.glob("*.[pj][np]g"))


def make_pascal_context(root: Path, train: int = 4, val: int = 2) -> Path:
    """root/VOCdevkit/VOC2010/{JPEGImages,SegmentationClassContext,ImageSets/SegmentationContext}."""
    base = Path(root) / "VOCdevkit" / "VOC2010"
    images, labels, sets = base / "JPEGImages", base / "SegmentationClassContext", base / "ImageSets" / "SegmentationContext"
    for folder in (images, labels, sets):
        folder.mkdir(parents=True, exist_ok=True)
    names = []
    for index, photo in enumerate(PHOTOS[: train + val]):
        name = f"2008_{index:06d}"
        Image.open(photo).convert("RGB").resize((128, 96)).save(images / f"{name}.jpg", quality=90)
        label = np.zeros((96, 128), dtype=np.uint8)  # 0 = background, ignored by PascalContextDataset59
        label[10:60, 5:70] = 1 + (7 * index) % 59
        label[40:90, 60:120] = 1 + (7 * index + 13) % 59
        label[0:20, 90:128] = 59
        Image.fromarray(label).save(labels / f"{name}.png")
        names.append(name)
    (sets / "train.txt").write_text("\n".join(names[:train]) + "\n")
    (sets / "val.txt").write_text("\n".join(names[train:]) + "\n")
    return base


def make_coco(root: Path) -> Path:
    """root/coco/{train2017,val2017,annotations/instances_{train,val}2017.json} with one image."""
    coco = Path(root) / "coco"
    annotations = json.loads((DATA / "coco_annotations_39769" / "instances_val2017_39769.json").read_text())
    image_info = annotations["images"][0]
    (coco / "annotations").mkdir(parents=True, exist_ok=True)
    for split in ("train2017", "val2017"):
        (coco / split).mkdir(exist_ok=True)
        photo = Image.open(PHOTOS_DIR / "chelsea.png").convert("RGB")
        photo.resize((image_info["width"], image_info["height"])).save(coco / split / image_info["file_name"])
        shutil.copy(DATA / "coco_annotations_39769" / "instances_val2017_39769.json",
                    coco / "annotations" / f"instances_{split}.json")
    return coco
