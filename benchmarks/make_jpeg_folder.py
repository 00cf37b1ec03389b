"""An ImageNet-like folder of JPEGs for input-pipeline benchmarks, cut from the real photos in
docs/images: random crops, flips and colour gains, sized like ImageNet's train images
(mostly 500 px on the long side, one in six larger), saved at quality 88-98 with 4:2:0 chroma.

    python benchmarks/make_jpeg_folder.py OUT --train 32768 --val 1024 --classes 1000 --processes 16
"""
from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

PHOTOS = Path(__file__).resolve().parents[1] / "docs" / "images"
SHAPES = ((500, 375), (375, 500), (500, 333), (333, 500), (500, 400), (400, 300))


def _image(sources, rng: np.random.Generator) -> Image.Image:
    source = sources[rng.integers(len(sources))]
    width, height = source.size
    scale = rng.uniform(0.4, 1.0)
    w, h = int(width * scale), int(height * scale)
    left, top = rng.integers(0, width - w + 1), rng.integers(0, height - h + 1)
    image = source.crop((left, top, left + w, top + h))
    size = SHAPES[rng.integers(len(SHAPES))]
    if rng.random() < 1 / 6:
        size = tuple(int(s * rng.uniform(1.5, 2.5)) for s in size)
    image = image.resize(size, Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    gains = rng.uniform(0.8, 1.2, 3)
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.float32) * gains, 0, 255).astype(np.uint8))


def _write(job) -> int:
    out, split, classes, start, stop, seed = job
    rng = np.random.default_rng(seed)
    sources = [Image.open(path).convert("RGB") for path in sorted(PHOTOS.glob("*")) if path.suffix in (".jpg", ".png")]
    for index in range(start, stop):
        folder = Path(out) / split / f"n{index % classes:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        _image(sources, rng).save(folder / f"{split}_{index:07d}.JPEG", quality=int(rng.integers(88, 99)))
    return stop - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--train", type=int, default=32768)
    parser.add_argument("--val", type=int, default=1024)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=os.cpu_count())
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    jobs = []
    for split, count in (("train", args.train), ("val", args.val)):
        bounds = np.linspace(0, count, args.processes + 1).astype(int)
        jobs += [(args.out, split, args.classes, int(a), int(b), args.seed * 1000 + len(jobs))
                 for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    with ProcessPoolExecutor(args.processes) as pool:
        written = sum(pool.map(_write, jobs))
    sizes = [p.stat().st_size for p in Path(args.out).glob("train/*/*.JPEG")]
    print(f"wrote {written} JPEGs under {args.out} (train mean {np.mean(sizes) / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
