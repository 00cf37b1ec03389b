"""The demo: its data derived from scikit-learn's digits, its output folder handling, and a quick
run of every stage through the real tools (`tools/run_demo.py --quick`)."""
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from demo import digits
from demo.pipeline import MARKER, prepare_output
from pretrain.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


def test_classification_splits(tmp_path):
    counts = digits.write_classification(tmp_path / "a", seed=0)
    assert counts["train"] + counts["val"] + counts["ood"] == 1797  # every scan used once (rotated = val again)
    assert counts["rotated"] == counts["val"]
    for split in ("train", "val", "rotated"):
        assert sorted(p.name for p in (tmp_path / "a" / split).iterdir()) == [str(d) for d in range(8)]
    assert sorted(p.name for p in (tmp_path / "a" / "ood").iterdir()) == ["8", "9"]
    assert (tmp_path / "a" / "classes.txt").read_text().split() == [str(d) for d in range(8)]
    # The rotated set holds the val images, rotated: same files, different pixels, same ink roughly.
    val_file, rotated_file = (sorted((tmp_path / "a" / split / "3").iterdir())[0] for split in ("val", "rotated"))
    assert val_file.name == rotated_file.name
    val = np.asarray(Image.open(val_file), dtype=np.float64)
    rotated = np.asarray(Image.open(rotated_file), dtype=np.float64)
    assert not np.array_equal(val, rotated) and rotated.sum() == pytest.approx(val.sum(), rel=0.25)
    digits.write_classification(tmp_path / "b", seed=0)
    digits.write_classification(tmp_path / "c", seed=1)
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b") != tree_digest(tmp_path / "c")


def test_canvases_agree_between_segmentation_and_detection(tmp_path):
    roots = digits.write_canvases(tmp_path, seed=0, train_count=6, val_count=3)
    for split in ("train", "val"):
        coco = json.loads((roots["coco"] / "annotations" / f"instances_{split}2017.json").read_text())
        assert [c["name"] for c in coco["categories"]] == [str(d) for d in range(10)]
        for image in coco["images"]:
            name = Path(image["file_name"]).stem
            label = np.asarray(Image.open(roots["pascal_context"] / "SegmentationClassContext" / f"{name}.png"))
            expected = np.zeros_like(label)
            instances = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
            assert 3 <= len(instances) <= 4
            for annotation in instances:
                mask = mask_utils.decode({"size": annotation["segmentation"]["size"],
                                          "counts": annotation["segmentation"]["counts"].encode()}).astype(bool)
                rows, cols = np.nonzero(mask)
                assert annotation["bbox"] == [cols.min(), rows.min(), cols.max() - cols.min() + 1,
                                              rows.max() - rows.min() + 1]
                assert not expected[mask].any()  # instances do not overlap
                expected[mask] = annotation["category_id"]  # category id = digit + 1 = segmentation class
            assert np.array_equal(label, expected)
            pixels = np.asarray(Image.open(roots["coco"] / f"{split}2017" / image["file_name"]))[..., 0]
            assert (pixels[label > 0] > 255 * digits.INK_THRESHOLD - 1).all()
        listed = (roots["pascal_context"] / "ImageSets" / "SegmentationContext" / f"{split}.txt").read_text().split()
        assert listed == [Path(image["file_name"]).stem for image in coco["images"]]


def test_output_folder_is_fresh_or_refused(tmp_path):
    out = tmp_path / "demo"
    assert prepare_output(out) is None and (out / MARKER).is_file()
    (out / "stale.json").write_text("{}")
    assert "nothing is reused" in prepare_output(out)
    assert not (out / "stale.json").exists() and (out / MARKER).is_file()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("")
    with pytest.raises(UserError, match="was not written by the demo"):
        prepare_output(foreign)
    assert (foreign / "thesis.tex").exists()


def test_quick_demo_runs_every_stage(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "run_demo.py"), "--quick", "--out", str(out),
                             "--seeds", "2"], capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert len(results["pretraining"]) == 6 and len(results["segmentation"]) == 6 and len(results["detection"]) == 3
    for entry in results["pretraining"].values():
        assert 0.0 <= entry["val_top1"] <= 100.0 and np.isfinite(entry["train_loss"])
    for entry in results["segmentation"].values():
        assert 0.0 <= entry["mIoU"] <= 100.0
    for entry in results["detection"].values():
        assert -1.0 <= entry["bbox_mAP"] <= 1.0 and -1.0 <= entry["segm_mAP"] <= 1.0
    models = results["robustness"]["models"]
    assert sorted(models) == sorted(f"{m}_tiny_digits_{r}" for m in ("deit", "pvt")
                                    for r in ("baseline", "transmix", "mixpro"))
    for bench in models.values():
        assert {"val", "shifted", "ood"} <= set(bench) and set(bench["val"]["occlusion"]) == {
            "random", "salient", "non_salient"}
    report = (out / "report.md").read_text()
    assert "Demonstration scale, not the paper's setting" in report
    for heading in ("## 1. Pretraining", "## 2. Segmentation", "## 3. Detection", "## 4. Robustness",
                    "## 5. Studies over seeds"):
        assert heading in report
    # The digit studies: every setting over both seeds, each but the reference paired with it.
    for name, settings in (("digits_table6", 6), ("digits_table10", 5)):
        summary = results["studies"][name]
        assert len(summary["settings"]) == settings
        for setting in summary["settings"]:
            assert setting["final_top1"]["n"] == 2 and setting["final_top1"]["low"] is not None
            assert setting["name"] == summary["reference"] or setting["final_top1_difference"]["seeds"] == [0, 1]
        assert (out / "studies" / name / "study_top1.png").is_file()
    # Every picture the report shows exists and is a non-empty PNG.
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert len(pictures) >= 12
    for picture in pictures:
        with Image.open(out / picture) as image:
            assert image.format == "PNG" and image.size[0] > 100
    # Deterministic for the seed: the first pretraining command again, with the environment commands.sh
    # exports (the CPU kernels and threads pinned), gives the same log.
    commands = (out / "commands.sh").read_text().splitlines()
    exported = {key: shlex.split(value)[0] for key, value in (line.removeprefix("export ").split("=", 1)
                                                               for line in commands if line.startswith("export "))}
    assert exported["ATEN_CPU_CAPABILITY"] == "avx2" and exported["OMP_NUM_THREADS"] == "2"
    first = next(line for line in commands if "tools/train.py" in line)
    args = shlex.split(first)[2:]
    again = tmp_path / "again"
    args[args.index("--output-dir") + 1] = str(again)
    subprocess.run([sys.executable, str(ROOT / "tools" / "train.py"), *args], check=True, capture_output=True,
                   cwd=ROOT, timeout=600, env={**os.environ, **exported})
    original = (out / "pretrain" / "deit_baseline" / "log.jsonl").read_text().splitlines()
    for before, after in zip(original, (again / "log.jsonl").read_text().splitlines(), strict=True):
        before, after = json.loads(before), json.loads(after)
        assert (before["train_loss"], before["val_top1"]) == (after["train_loss"], after["val_top1"])
