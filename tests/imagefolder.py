"""Generated ImageNet-style folders for pretraining tests (the pixels are synthetic: each class is a
colour with a stripe orientation, plus noise, so a tiny model can learn it in a few epochs)."""
from pathlib import Path

import numpy as np
from PIL import Image

CLASS_NAMES = ("n01440764", "n01443537", "n01484850", "n01491361")


def class_image(label: int, size: int, rng: np.random.Generator) -> Image.Image:
    colour = np.zeros(3)
    colour[label % 3] = 200.0
    yy, xx = np.mgrid[0:size, 0:size]
    stripes = ((xx if label < 2 else yy) // max(size // 8, 1)) % 2
    pixels = colour[None, None, :] * (0.6 + 0.4 * stripes[..., None]) + rng.normal(0, 20, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def make_image_folder(root: Path, per_class_train: int = 24, per_class_val: int = 8, size: int = 40,
                      seed: int = 0, classes=CLASS_NAMES) -> Path:
    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class_train), ("val", per_class_val)):
        for label, name in enumerate(classes):
            folder = Path(root) / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                class_image(label, size, rng).save(folder / f"{name}_{index}.JPEG", quality=90)
    return Path(root)
