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
                 "occlusion_salient.png", "occlusion_non_salient.png", "reliability_imagenet_a.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    report = json.loads((out / "report.json").read_text())
    assert set(report["models"]) == {"vit_random", "deit_tiny_patch16_224"}
    val = results["vit_random"]["imagenet_val"]
    assert val["images"] == 8 and val["saliency"] == "own_attention"
    assert set(val["occlusion"]) == {"random", "salient", "non_salient"}
    assert len(val["occlusion"]["random"]) == 10 and val["occlusion"]["random"]["0.0"] == val["top1"]
    a = results["deit_tiny_patch16_224"]["imagenet_a"]
    assert a["images"] == 4 and 0 <= a["calibration_error"] <= 100 and 0 <= a["aurra"] <= 100
    o = results["vit_random"]["imagenet_o"]
    assert o["ood_images"] == 4 and o["in_distribution_images"] == 4 and 0 <= o["aupr"] <= 100
    markdown = (out / "report.md").read_text()
    assert "IN-A calib. error" in markdown and "Non-salient patch dropping" in markdown and "vit_random" in markdown


def test_missing_benchmarks_are_skipped_and_marked(trees, tmp_path):
    out = tmp_path / "only_a"
    main("report", ["--checkpoint", str(trees["ours"]), "--imagenet-a", str(trees["a"]), "--out", str(out),
                    "--device", "cpu", "--workers", "0"])
    report = json.loads((out / "report.json").read_text())
    assert set(report["skipped"]) == {"imagenet_val / occlusion", "imagenet_o"}
    assert "imagenet_o: not run (no --imagenet-o given)" in (out / "report.md").read_text()
    assert not (out / "occlusion.csv").exists()


def test_bad_inputs_are_clear_errors(trees, tmp_path):
    with pytest.raises(SystemExit, match="--imagenet-a .*nowhere does not exist"):
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
    assert results["vit_random"]["imagenet_val"]["saliency"] == "dino"
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
    assert two["imagenet_val"]["images"] == one["imagenet_val"]["images"] == 8
    for bench, keys in (("imagenet_a", ("calibration_error", "aurra", "top1", "images")),
                        ("imagenet_o", ("aupr", "auroc", "fpr_at_95_tpr", "ood_images"))):
        for key in keys:
            assert two[bench][key] == pytest.approx(one[bench][key], abs=1e-6), (bench, key)
