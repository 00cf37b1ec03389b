"""ImageNet-R / -Sketch / -V2 / -C in the report: class slicing and ImageNet-C's per-folder counts
with stand-in classifiers of known logits, the checks made before any model is evaluated, and the
whole report over two checkpoints with every benchmark given (tiny trees of each layout)."""
import csv
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import timm
import torch

from pretrain.checkpoint import save_atomic
from pretrain.errors import ConfigError
from robustness.cli import main
from robustness.corruptions import CORRUPTIONS, EXTRA_CORRUPTIONS, SEVERITIES, corruption_summary
from robustness.data import (IMAGENET_A_WNIDS, IMAGENET_O_WNIDS, IMAGENET_R_INDICES, IMAGENET_R_WNIDS, IMAGENET_WNIDS,
                             imagenet_c, imagenet_r)
from robustness.evaluate import Classifier, Settings, evaluate_corruptions, evaluate_top1

sys.path.insert(0, str(Path(__file__).parent))
from test_robustness_data import corruption_tree, place  # noqa: E402

SETTINGS = Settings(batch_size=3, workers=0, amp=False, show_progress=False)


def constant(logits: torch.Tensor) -> Classifier:
    """A stand-in model whose logits are ``logits`` for every image."""
    return Classifier("stub", torch.device("cpu"), lambda images: logits.expand(images.shape[0], -1))


def test_imagenet_r_predicts_over_its_slice_or_all_classes(tmp_path):
    position = 7
    evalset = imagenet_r(place(tmp_path, [IMAGENET_R_WNIDS[position]]))
    outside = next(index for index in range(1000) if index not in IMAGENET_R_INDICES)
    logits = torch.zeros(1000)
    logits[IMAGENET_R_INDICES[position]] = 2.0  # the true class: the best of the 200
    logits[outside] = 5.0  # the best of all 1000, not an ImageNet-R class
    assert evaluate_top1(constant(logits), evalset, SETTINGS)["top1"] == 100.0
    assert evaluate_top1(constant(logits), evalset, replace(SETTINGS, all_class_argmax=True))["top1"] == 0.0
    logits[outside] = 0.0
    assert evaluate_top1(constant(logits), evalset, replace(SETTINGS, all_class_argmax=True))["top1"] == 100.0
    # Labels are positions in the 200 list: the neighbouring ImageNet-R class winning is a mistake.
    logits[IMAGENET_R_INDICES[position + 1]] = 3.0
    assert evaluate_top1(constant(logits), evalset, SETTINGS)["top1"] == 0.0


def test_imagenet_c_errors_per_corruption_and_severity(tmp_path):
    predicted, other = IMAGENET_WNIDS[10], IMAGENET_WNIDS[20]
    root = corruption_tree(tmp_path, {"fog": {1: [predicted, other], 2: [predicted]}, "spatter": {4: [other]}},
                           per_folder=2)
    logits = torch.zeros(1000)
    logits[10] = 1.0
    result = evaluate_corruptions(constant(logits), imagenet_c(root), SETTINGS, clean_top1=75.0)
    assert result["errors"] == {"fog": {1: 50.0, 2: 0.0}, "spatter": {4: 100.0}}
    assert result["images"] == 8 and result["clean_error"] == 25.0
    assert result["ce"] == corruption_summary(result["errors"], 25.0)["ce"] and result["mce"] is None


def tiny_checkpoint(path: Path, depth: int, seed: int, input_size: int = 224) -> Path:
    torch.manual_seed(seed)
    model = timm.create_model("vit_tiny_patch16_224", depth=depth, img_size=input_size)
    save_atomic({"state_dict": model.state_dict(), "meta": {"arch": "vit_tiny_patch16_224", "recipe": "mixpro",
                                                            "model_kwargs": {"depth": depth}, "input_size": input_size,
                                                            "num_classes": 1000}}, path)
    return path


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    root = tmp_path_factory.mktemp("benchmarks")
    shared_o = sorted(IMAGENET_O_WNIDS)[:2]
    every_severity = {severity: [IMAGENET_WNIDS[severity * 100]] for severity in SEVERITIES}
    return {
        "val": place(root / "val", [IMAGENET_WNIDS[0], IMAGENET_A_WNIDS[3], *shared_o]),
        "a": place(root / "a", [IMAGENET_A_WNIDS[3], IMAGENET_A_WNIDS[77]]),
        "o": place(root / "o", sorted(IMAGENET_O_WNIDS)[5:7]),
        "r": place(root / "r", [IMAGENET_R_WNIDS[0], IMAGENET_R_WNIDS[150]]),
        "sketch": place(root / "sketch", [IMAGENET_WNIDS[1], IMAGENET_WNIDS[998]]),
        "v2": place(root / "v2", ["0", "500", "999"]),
        "c": corruption_tree(root / "c", {c: every_severity for c in (*CORRUPTIONS, *EXTRA_CORRUPTIONS)}),
        "ours": tiny_checkpoint(root / "vit_two_blocks.pth", depth=2, seed=0),
        "other": tiny_checkpoint(root / "vit_one_block.pth", depth=1, seed=1),
        "small": tiny_checkpoint(root / "vit_64px.pth", depth=1, seed=2, input_size=64),
    }


def every_benchmark(trees):
    return ["--imagenet-val", str(trees["val"]), "--imagenet-a", str(trees["a"]), "--imagenet-o", str(trees["o"]),
            "--imagenet-r", str(trees["r"]), "--imagenet-sketch", str(trees["sketch"]), "--imagenet-v2", str(trees["v2"]),
            "--imagenet-c", str(trees["c"])]


def test_report_with_every_benchmark(trees, tmp_path):
    out = tmp_path / "report"
    results = main("report", ["--checkpoint", str(trees["ours"]), "--checkpoint", str(trees["other"]),
                              *every_benchmark(trees), "--out", str(out), "--device", "cpu", "--workers", "0",
                              "--batch-size", "16"])
    for name in ("report.md", "report.json", "table5.csv", "occlusion.csv", "shifts.csv", "imagenet_c_errors.csv",
                 "imagenet_c_ce.csv", "occlusion_random.png", "occlusion_salient.png", "occlusion_non_salient.png",
                 "reliability_shifted.png", "imagenet_c_errors.png", "imagenet_c_ce.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert set(results) == {"vit_two_blocks", "vit_one_block"}
    report = json.loads((out / "report.json").read_text())
    assert report["skipped"] == {}
    for name, result in results.items():
        assert result["imagenet_r"]["images"] == 4 and result["sketch"]["images"] == 4 and result["v2"]["images"] == 6
        assert 0 <= result["ood"]["aupr_in"] <= 100
        corrupted = result["corruptions"]
        assert corrupted["images"] == 95 and set(corrupted["errors"]) == set(CORRUPTIONS) | set(EXTRA_CORRUPTIONS)
        # mCE and relative mCE from the per-folder errors and the clean top-1 of the same report.
        expected = corruption_summary(corrupted["errors"], 100.0 - result["val"]["top1"])
        assert corrupted["mce"] == pytest.approx(expected["mce"])
        assert corrupted["relative_mce"] == pytest.approx(expected["relative_mce"])
        assert report["models"][name]["corruptions"]["mce"] == pytest.approx(expected["mce"])
    with open(out / "imagenet_c_errors.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * 19 * 5
    row = next(r for r in rows if r["model"] == "vit_one_block" and r["corruption"] == "fog" and r["severity"] == "3")
    assert float(row["top1_error"]) == pytest.approx(results["vit_one_block"]["corruptions"]["errors"]["fog"][3], abs=1e-3)
    with open(out / "shifts.csv") as handle:
        header = next(csv.reader(handle))
    assert header == ["model", "IN-R top-1", "IN-Sketch top-1", "IN-V2 top-1", "IN-C mean error (lower better)",
                      "IN-C mCE (lower better)", "IN-C relative mCE (lower better)"]
    markdown = (out / "report.md").read_text()
    for text in ("IN-O AUPR-In", "The 15 corruptions of mCE", "The 4 extra corruptions (not in mCE)", "imagenet_c_ce.png",
                 "--calibration-protocol all-bins", "over the set's 200 classes", "--fpr-definition first-reaching",
                 "AlexNet errors: Hendrycks & Dietterich"):
        assert text in markdown, text


def test_subset_of_imagenet_c_and_protocol_switches(trees, tmp_path):
    """Two corruptions, no val: CEs without mCE (the report says why), and the switches in the notes."""
    subset = corruption_tree(tmp_path / "c", {"fog": {1: [IMAGENET_WNIDS[3]]}, "saturate": {2: [IMAGENET_WNIDS[4]]}})
    out = tmp_path / "report"
    results = main("report", ["--checkpoint", str(trees["other"]), "--imagenet-c", str(subset), "--imagenet-r",
                              str(trees["r"]), "--all-class-argmax", "--fpr-definition", "nearest-recall",
                              "--out", str(out), "--device", "cpu", "--workers", "0"])["vit_one_block"]
    assert results["corruptions"]["mce"] is None and set(results["corruptions"]["ce"]) == {"fog", "saturate"}
    markdown = (out / "report.md").read_text()
    assert "mCE needs all 15 corruptions at severities 1-5" in markdown
    assert "over all the model's classes (--all-class-argmax" in markdown
    assert "IN-O: not run" in markdown and "IN-V2: not run" in markdown


def test_bad_inputs_stop_before_any_evaluation(trees, tmp_path):
    common = ["--checkpoint", str(trees["ours"]), "--out", str(tmp_path / "r"), "--device", "cpu", "--workers", "0"]
    not_r = next(w for w in IMAGENET_WNIDS if w not in IMAGENET_R_WNIDS)
    with pytest.raises(ConfigError, match=f"not ImageNet-R classes: \\['{not_r}'\\]"):
        main("report", [*common, "--imagenet-r", str(place(tmp_path / "r_bad", [IMAGENET_R_WNIDS[0], not_r]))])
    with pytest.raises(ConfigError, match="not ImageNet-V2 classes: \\['n01440764'\\]"):
        main("report", [*common, "--imagenet-v2", str(place(tmp_path / "v2_bad", ["0", "n01440764"]))])
    with pytest.raises(ConfigError, match="--imagenet-sketch is an ImageNet-1k benchmark"):
        (tmp_path / "classes.txt").write_text("a\nb\n")
        main("report", [*common, "--imagenet-sketch", str(trees["sketch"]), "--classes", str(tmp_path / "classes.txt")])
    with pytest.raises(ConfigError, match="reference needs 100 images of IN-A at least .* has 4"):
        main("report", [*common, "--imagenet-a", str(trees["a"]), "--calibration-protocol", "reference"])
    with pytest.raises(ConfigError, match="vit_64px.pth takes 64-px images"):
        main("report", ["--checkpoint", str(trees["small"]), "--imagenet-c", str(trees["c"]), "--out",
                        str(tmp_path / "r"), "--device", "cpu"])
