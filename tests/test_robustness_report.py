"""The report command end to end on tiny trees: real photos placed under real val / A / O wnids,
random-weight models (ours exported, and a timm model with local weights)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

import pretrain.models  # noqa: F401
from pretrain.checkpoint import save_atomic
from pretrain.errors import ConfigError, InputNotFoundError
from robustness.cli import main
from robustness.data import IMAGENET_A_WNIDS, IMAGENET_O_WNIDS, IMAGENET_WNIDS

sys.path.insert(0, str(Path(__file__).parent))
from test_robustness_data import place  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    root = tmp_path_factory.mktemp("robustness")
    shared_o = sorted(IMAGENET_O_WNIDS)[:2]
    val = place(root / "val", [IMAGENET_WNIDS[0], IMAGENET_A_WNIDS[3], *shared_o])
    a = place(root / "a", [IMAGENET_A_WNIDS[3], IMAGENET_A_WNIDS[77]])
    o = place(root / "o", sorted(IMAGENET_O_WNIDS)[5:7])
    torch.manual_seed(0)
    ours = root / "vit_random.pth"
    model = timm.create_model("vit_tiny_patch16_224", depth=2)
    save_atomic({"state_dict": model.state_dict(), "meta": {"arch": "vit_tiny_patch16_224", "recipe": "mixpro",
                                                            "model_kwargs": {"depth": 2}, "input_size": 224,
                                                            "num_classes": 1000}}, ours)
    timm_weights = root / "deit_tiny_random.pth"
    torch.save(timm.create_model("deit_tiny_patch16_224").state_dict(), timm_weights)
    return {"val": val, "a": a, "o": o, "ours": ours, "timm": f"deit_tiny_patch16_224={timm_weights}"}


def test_report_end_to_end(trees, tmp_path):
    out = tmp_path / "report"
    results = main("report", ["--checkpoint", str(trees["ours"]), "--checkpoint", trees["timm"],
                              "--imagenet-val", str(trees["val"]), "--imagenet-a", str(trees["a"]),
                              "--imagenet-o", str(trees["o"]), "--out", str(out), "--device", "cpu",
                              "--workers", "0", "--batch-size", "4"])
    for name in ("report.md", "report.json", "table5.csv", "occlusion.csv", "occlusion_random.png",
                 "occlusion_salient.png", "occlusion_non_salient.png", "reliability_shifted.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    report = json.loads((out / "report.json").read_text())
    assert set(report["models"]) == {"vit_random", "deit_tiny_patch16_224"}
    val = results["vit_random"]["val"]
    assert val["images"] == 8 and val["saliency"] == "own_attention"
    assert set(val["occlusion"]) == {"random", "salient", "non_salient"}
    assert len(val["occlusion"]["random"]) == 10 and val["occlusion"]["random"]["0.0"] == val["top1"]
    a = results["deit_tiny_patch16_224"]["shifted"]
    assert a["images"] == 4 and 0 <= a["calibration_error"] <= 100 and 0 <= a["aurra"] <= 100
    o = results["vit_random"]["ood"]
    assert o["ood_images"] == 4 and o["in_distribution_images"] == 4 and 0 <= o["aupr"] <= 100
    markdown = (out / "report.md").read_text()
    assert "IN-A calib. error" in markdown and "Non-salient patch dropping" in markdown and "vit_random" in markdown


def test_missing_benchmarks_are_skipped_and_marked(trees, tmp_path):
    out = tmp_path / "only_a"
    main("report", ["--checkpoint", str(trees["ours"]), "--imagenet-a", str(trees["a"]), "--out", str(out),
                    "--device", "cpu", "--workers", "0"])
    report = json.loads((out / "report.json").read_text())
    assert set(report["skipped"]) == {"val", "ood", "imagenet_r", "sketch", "v2", "corruptions"}
    assert "IN-O: not run (OOD detection; no --ood / --imagenet-o given)" in (out / "report.md").read_text()
    assert not (out / "occlusion.csv").exists()


def test_bad_inputs_are_clear_errors(trees, tmp_path):
    with pytest.raises(InputNotFoundError, match="--shifted .*nowhere does not exist"):
        main("report", ["--checkpoint", str(trees["ours"]), "--imagenet-a", str(tmp_path / "nowhere"),
                        "--out", str(tmp_path)])
    bad = place(tmp_path / "bad_a", [IMAGENET_A_WNIDS[0]])
    (bad / "n00000000").mkdir()
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "robustness_report.py"), "--checkpoint",
                             str(trees["ours"]), "--imagenet-a", str(bad), "--out", str(tmp_path / "r"),
                             "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "n00000000" in result.stderr


def test_dino_saliency_from_local_weights(trees, tmp_path):
    dino = tmp_path / "dino_vits16.pth"
    torch.save(timm.create_model("vit_small_patch16_224", num_classes=0).state_dict(), dino)  # DINO's layout
    results = main("report", ["--checkpoint", str(trees["ours"]), "--imagenet-val", str(trees["val"]),
                              "--dino", str(dino), "--out", str(tmp_path / "r"), "--device", "cpu", "--workers", "0"])
    assert results["vit_random"]["val"]["saliency"] == "dino"
    assert "DINO ViT-S/16 head 1" in (tmp_path / "r" / "report.md").read_text()


def test_two_processes_give_the_single_process_numbers(trees, tmp_path):
    """Under torchrun each process evaluates a shard; gathered, the metrics are the single-process ones."""
    common = ["--checkpoint", str(trees["ours"]), "--imagenet-a", str(trees["a"]), "--imagenet-o", str(trees["o"]),
              "--imagenet-val", str(trees["val"]), "--device", "cpu", "--workers", "0", "--batch-size", "2"]
    tool = str(ROOT / "tools" / "robustness_report.py")
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    for command, out in (([sys.executable, tool], "one"),
                         ([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           "29531", tool], "two")):
        result = subprocess.run([*command, *common, "--out", str(tmp_path / out)], capture_output=True, text=True,
                                timeout=600, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
    one = json.loads((tmp_path / "one" / "report.json").read_text())["models"]["vit_random"]
    two = json.loads((tmp_path / "two" / "report.json").read_text())["models"]["vit_random"]
    assert two["val"]["images"] == one["val"]["images"] == 8
    for bench, keys in (("shifted", ("calibration_error", "aurra", "top1", "images")),
                        ("ood", ("aupr", "auroc", "fpr_at_95_tpr", "ood_images"))):
        for key in keys:
            assert two[bench][key] == pytest.approx(one[bench][key], abs=1e-6), (bench, key)


def test_own_label_space_and_pvt_attention_grid(tmp_path):
    """A label space of one's own (--classes, --names) and a PVT whose own attention covers its
    32-px stage-4 cells: occlusion then drops 32-px patches, the cells the saliency ranks."""
    classes = ["seven", "three"]  # logit order differs from the sorted folder order
    val = place(tmp_path / "val", classes)
    shifted = place(tmp_path / "shifted", ["three"])
    ood = place(tmp_path / "ood", ["anything", "else"])
    (tmp_path / "classes.txt").write_text("\n".join(classes) + "\n")
    torch.manual_seed(0)
    pvt = timm.create_model("pvt_tiny", num_classes=2, img_size=64, embed_dims=(16, 32, 32, 64),
                            num_heads=(1, 2, 2, 4), depths=(1, 1, 1, 1), mlp_ratios=(2, 2, 2, 2))
    checkpoint = tmp_path / "pvt_digits.pth"
    save_atomic({"state_dict": pvt.state_dict(), "meta": {
        "arch": "pvt_tiny", "num_classes": 2, "input_size": 64, "interpolation": "bicubic", "crop_pct": 1.0, "model_kwargs": {
            "embed_dims": (16, 32, 32, 64), "num_heads": (1, 2, 2, 4), "depths": (1, 1, 1, 1),
            "mlp_ratios": (2, 2, 2, 2)}}}, checkpoint)
    out = tmp_path / "report"
    results = main("report", ["--checkpoint", str(checkpoint), "--classes", str(tmp_path / "classes.txt"),
                              "--val", str(val), "--shifted", str(shifted), "--ood", str(ood),
                              "--names", "held-out", "rotated", "unseen", "--out", str(out), "--device", "cpu",
                              "--workers", "0", "--batch-size", "4"])["pvt_digits"]
    assert results["val"]["patch_size"] == 32 and results["val"]["saliency"] == "own_attention"
    assert set(results["val"]["occlusion"]) == {"random", "salient", "non_salient"}
    assert results["shifted"]["images"] == 2 and results["ood"]["ood_images"] == 4
    assert results["ood"]["in_distribution_images"] == 4
    # Recompute the shifted-set accuracy by hand: label "three" is logit 1 of the class list.
    model = timm.create_model("pvt_tiny", num_classes=2, img_size=64, embed_dims=(16, 32, 32, 64),
                              num_heads=(1, 2, 2, 4), depths=(1, 1, 1, 1), mlp_ratios=(2, 2, 2, 2))
    model.load_state_dict(pvt.state_dict())
    from pretrain.data.transforms import eval_transform
    from PIL import Image
    mean = torch.tensor(pvt.pretrained_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(pvt.pretrained_cfg["std"]).view(1, 3, 1, 1)
    images = torch.stack([eval_transform(64, "bicubic", 1.0)(Image.open(path).convert("RGB"))
                          for path in sorted((shifted / "three").iterdir())])
    with torch.no_grad():
        predicted = model.eval()((images - mean) / std).argmax(1)
    assert results["shifted"]["top1"] == pytest.approx(100.0 * (predicted == 1).float().mean().item())
    markdown = (out / "report.md").read_text()
    assert "rotated calib. error" in markdown and "unseen AUPR" in markdown and "held-out top-1" in markdown


def test_model_must_predict_the_label_space(trees, tmp_path):
    """A 1000-class checkpoint against an 8-class list would compare argmaxes over 1000 logits with
    labels 0-7: refused, naming the mismatch."""
    (tmp_path / "classes.txt").write_text("\n".join(str(d) for d in range(8)) + "\n")
    with pytest.raises(ConfigError, match="predicts 1000 classes but the label space, --classes .* has 8"):
        main("report", ["--checkpoint", str(trees["ours"]), "--classes", str(tmp_path / "classes.txt"),
                        "--val", str(place(tmp_path / "val", ["0", "1"])), "--out", str(tmp_path / "r"),
                        "--device", "cpu"])


def test_gpu_data_pipeline_gives_the_cpu_numbers(trees, tmp_path):
    """Workers reading bytes, decoding and resizing on the device (here its CPU fallback): the same
    accuracies, occlusion curves, calibration and OOD scores as timm's transforms in the workers."""
    common = ["--checkpoint", str(trees["ours"]), "--imagenet-val", str(trees["val"]), "--imagenet-a", str(trees["a"]),
              "--imagenet-o", str(trees["o"]), "--device", "cpu", "--workers", "0", "--batch-size", "4"]
    cpu = main("report", [*common, "--out", str(tmp_path / "cpu"), "--data-pipeline", "cpu"])["vit_random"]
    gpu = main("report", [*common, "--out", str(tmp_path / "gpu"), "--data-pipeline", "gpu"])["vit_random"]
    assert gpu["val"]["top1"] == cpu["val"]["top1"] and gpu["val"]["occlusion"] == cpu["val"]["occlusion"]
    assert gpu["shifted"]["confidence"] == pytest.approx(cpu["shifted"]["confidence"], abs=1e-5)
    assert gpu["ood"]["aupr"] == pytest.approx(cpu["ood"]["aupr"], abs=1e-6)
