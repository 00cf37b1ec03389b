"""Checkpoint files: one clear error per kind of bad file; both kinds (training checkpoint, export) carry
what rebuilding the model needs and work in every consumer; the report evaluates as pretraining does."""
import json
import runpy
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from pretrain import checkpoint as ckpt
from pretrain.config import parse_args
from pretrain.builder import build_model
from pretrain.data import build_transforms
from pretrain.errors import CheckpointError, InputNotFoundError
from pretrain.inference import load_model, read_model_spec
from pretrain.main import main as pretrain
from robustness.cli import main as report

sys.path.insert(0, str(Path(__file__).parent))
from imagefolder import CLASS_NAMES, make_image_folder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Not the ImageNet defaults: 4 classes, 48 px, a 2-block ViT with 8-px patches; evaluation resizes 48 -> 60 -> 48.
TINY = ["--model", "vit_tiny_patch16_224", "--model-kwargs", "patch_size=8", "embed_dim=32", "depth=2", "num_heads=2",
        "--input-size", "48", "--mask-patch-size", "16", "--num-classes", "4", "--batch-size", "8", "--epochs", "1",
        "--warmup-epochs", "0", "--lr-base-batch", "0", "--lr", "2e-3", "--auto-augment", "", "--reprob", "0",
        "--color-jitter", "0", "--workers", "0", "--device", "cpu", "--amp", "none", "--eval-crop-pct", "0.8",
        "--interpolation", "bicubic", "--drop-path", "0.0"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A one-epoch run on 40-px images (upscaled to 60, cropped to 48) and its export."""
    root = tmp_path_factory.mktemp("ckpt")
    data = make_image_folder(root / "data", size=40, per_class_train=8, per_class_val=8)
    pretrain(parse_args([*TINY, "--data-path", str(data), "--output-dir", str(root / "run")]))
    ckpt.export_weights(root / "run" / ckpt.LAST, root / "export.pth")
    (root / "classes.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    log = [json.loads(line) for line in (root / "run" / "log.jsonl").read_text().splitlines()]
    return {"root": root, "data": data, "last": root / "run" / ckpt.LAST, "export": root / "export.pth",
            "log": log, "classes": root / "classes.txt"}


def test_safetensors_export_loads_into_timm(run, tmp_path):
    """The .safetensors export: timm's own pretrained loading reads it, and so does every tool of ours."""
    import timm

    out = tmp_path / "deit.safetensors"
    ckpt.export_weights(run["last"], out)
    trained = torch.load(run["last"], weights_only=True)["model"]
    # the overlay's num_classes tells timm the file's head fits (else it re-initialises a non-1000-class head)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=True,
                              pretrained_cfg_overlay=dict(file=str(out), num_classes=4), num_classes=4, img_size=48,
                              patch_size=8, embed_dim=32, depth=2, num_heads=2)
    assert all(torch.equal(value, trained[key]) for key, value in model.state_dict().items())
    loaded = load_model(str(out), torch.device("cpu"))
    assert loaded.meta["num_classes"] == 4 and loaded.interpolation == "bicubic" and loaded.crop_pct == 0.8
    assert all(torch.equal(value, trained[key]) for key, value in loaded.model.state_dict().items())
    (tmp_path / "cut.safetensors").write_bytes(out.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="is not a readable safetensors file"):
        read_model_spec(str(tmp_path / "cut.safetensors"))


def test_fine_tuning_starts_from_the_checkpoint_with_a_new_head(run, tmp_path):
    """Two classes from a four-class run: every weight but the classifier's comes from the file (an
    export, a .safetensors export, or {'model': state dict} as DeiT's own checkpoints), the head is
    re-initialised, and a run trains from it; a checkpoint of another architecture is refused."""
    data = make_image_folder(tmp_path / "two", size=40, per_class_train=8, per_class_val=4, classes=CLASS_NAMES[:2])
    trained = torch.load(run["last"], weights_only=True)["model"]
    ckpt.export_weights(run["last"], tmp_path / "deit.safetensors")
    torch.save({"model": trained}, tmp_path / "official_layout.pth")
    for source in (run["export"], tmp_path / "deit.safetensors", tmp_path / "official_layout.pth"):
        config = parse_args([*TINY, "--num-classes", "2", "--initial-checkpoint", str(source), "--data-path", str(data)])
        model = build_model(config)
        assert ckpt.initialise_from(model, source) == ["head.weight", "head.bias"]
        assert model.head.weight.shape == (2, 32)
        assert all(torch.equal(value, trained[key]) for key, value in model.state_dict().items()
                   if not key.startswith("head."))
    pretrain(parse_args([*TINY, "--num-classes", "2", "--initial-checkpoint", str(run["export"]), "--data-path",
                         str(data), "--output-dir", str(tmp_path / "fine")]))
    assert len((tmp_path / "fine" / "log.jsonl").read_text().splitlines()) == 1
    deeper = parse_args([*TINY, "--model-kwargs", "patch_size=8", "embed_dim=32", "depth=3", "num_heads=2"])
    with pytest.raises(CheckpointError, match="missing .*blocks.2"):
        ckpt.initialise_from(build_model(deeper), run["export"])


@pytest.mark.parametrize("kind", ["last", "export"])
def test_both_kinds_rebuild_the_trained_model(run, kind):
    meta = read_model_spec(str(run[kind]))
    assert {key: meta[key] for key in ("arch", "num_classes", "input_size", "interpolation", "crop_pct")} == {
        "arch": "vit_tiny_patch16_224", "num_classes": 4, "input_size": 48, "interpolation": "bicubic",
        "crop_pct": 0.8}
    loaded = load_model(str(run[kind]), torch.device("cpu"))
    trained = torch.load(run["last"], weights_only=True)["model"]
    assert all(torch.equal(value, trained[key]) for key, value in loaded.model.state_dict().items())


def test_report_evaluates_as_pretraining_did(run):
    """The report's clean top-1 of both kinds is pretraining's val top-1 on the same folder, and its
    transform is pretraining's evaluation transform before normalisation."""
    results = report("report", ["--checkpoint", str(run["last"]), "--checkpoint", str(run["export"]),
                                "--classes", str(run["classes"]), "--val", str(run["data"] / "val"),
                                "--out", str(run["root"] / "report"), "--device", "cpu", "--workers", "0",
                                "--random-patch-size", "8"])
    val_top1 = run["log"][-1]["val_top1"]
    assert [entry["val"]["top1"] for entry in results.values()] == pytest.approx([val_top1, val_top1], abs=1e-9)
    config = parse_args([*TINY, "--data-path", str(run["data"])])
    loaded = load_model(str(run["last"]), torch.device("cpu"))
    _, pretraining_eval = build_transforms(config, loaded.model)
    image = Image.open(next((run["data"] / "val" / CLASS_NAMES[0]).iterdir())).convert("RGB")
    normalised = (loaded.eval_transform("checkpoint")(image)[None] - loaded.mean) / loaded.std
    assert torch.allclose(normalised[0], pretraining_eval(image), atol=1e-6)
    notes = (run["root"] / "report" / "report.md").read_text()
    assert "--eval-transform checkpoint" in notes and "bicubic 60 -> 48" in notes


@pytest.mark.parametrize("kind", ["last", "export"])
def test_visualize_mixing_takes_both_kinds(run, kind, tmp_path):
    visualize = runpy.run_path(str(ROOT / "tools" / "visualize_mixing.py"))["main"]
    visualize(["--checkpoint", str(run[kind]), "--images", str(ROOT / "docs" / "images"), "--mask-patch-size", "16",
               "--out", str(tmp_path / "mixing.png")])
    assert Image.open(tmp_path / "mixing.png").size[0] > 100


def test_bad_files_get_one_clear_error_each(run, tmp_path):
    cases = {"empty.pth": b"", "text.pth": b"epoch 3 top-1 71.2\n",
             "truncated.pth": run["export"].read_bytes()[:5000]}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    with open(tmp_path / "objects.pth", "wb") as handle:  # a pickle of a class: only full unpickling reads it
        torch.save({"model": Path("x")}, handle)
    expected = {"empty.pth": "is empty \\(0 bytes\\)", "text.pth": "is not a PyTorch checkpoint",
                "truncated.pth": "is truncated or corrupt", "objects.pth": "holds Python objects .* not loaded"}
    for name, message in expected.items():
        with pytest.raises(CheckpointError, match=message):
            ckpt.read_checkpoint(tmp_path / name)
    with pytest.raises(InputNotFoundError, match="does not exist"):
        ckpt.read_checkpoint(tmp_path / "absent.pth")
    # torch's legacy (non-zip) format, cut anywhere: the unpickler fails in many ways, always one error
    torch.save({"model": {"w": torch.arange(64.0)}, "epoch": 3}, tmp_path / "legacy.pth",
               _use_new_zipfile_serialization=False)
    legacy = (tmp_path / "legacy.pth").read_bytes()
    assert ckpt.read_checkpoint(tmp_path / "legacy.pth")["epoch"] == 3
    for cut in range(1, len(legacy), 7):
        (tmp_path / "cut.pth").write_bytes(legacy[:cut])
        with pytest.raises(CheckpointError, match="truncated or corrupt|not a PyTorch checkpoint"):
            ckpt.read_checkpoint(tmp_path / "cut.pth")
    with pytest.raises(CheckpointError, match="not a training checkpoint \\(an exported model"):
        ckpt.export_weights(run["export"], tmp_path / "again.pth")


def write_cifar10(root: Path, per_batch: int = 4, test_images: int = 8) -> Path:
    """CIFAR-10's python layout as torchvision reads it (five training batches, a test batch, the
    label names), with tiny synthetic images: 32-px class pictures of the test image folders."""
    import pickle

    import numpy as np

    from imagefolder import class_image

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def batch(count, offset):
        labels = [(offset + index) % 4 for index in range(count)]
        data = np.stack([np.asarray(class_image(label, 32, rng)).transpose(2, 0, 1).reshape(-1) for label in labels])
        return {"data": data, "labels": labels}

    for index in range(1, 6):
        (folder / f"data_batch_{index}").write_bytes(pickle.dumps(batch(per_batch, index)))
    (folder / "test_batch").write_bytes(pickle.dumps(batch(test_images, 0)))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))
    return root


def test_cifar10_fine_tune_from_a_checkpoint(run, tmp_path, monkeypatch):
    """--dataset torch/cifar10 through timm's create_dataset: the class count comes from the data (10),
    the run starts from a four-class export (head re-initialised) and trains with MixPro on the CPU
    path; torchvision's checksum check stands between it and files it did not download."""
    import torchvision.datasets.cifar

    from pretrain.errors import ConfigError

    root = write_cifar10(tmp_path / "cifar")
    without_classes = [arg for index, arg in enumerate(TINY)
                       if "--num-classes" not in TINY[max(index - 1, 0):index + 1]]
    args = [*without_classes, "--dataset", "torch/cifar10", "--data-path", str(root), "--initial-checkpoint",
            str(run["export"]), "--recipe", "mixpro", "--maskmix-prob", "1.0", "--output-dir", str(tmp_path / "fine")]
    with pytest.raises(InputNotFoundError, match="torch/cifar10 could not read split 'train'.*corrupted"):
        pretrain(parse_args(args))
    # the test's files are not the published ones: torchvision's md5 check would refuse them
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: Path(path).is_file())
    with pytest.raises(ConfigError, match="--data-pipeline gpu decodes image files"):
        pretrain(parse_args([*args, "--data-pipeline", "gpu"]))
    pretrain(parse_args(args))
    (record,) = [json.loads(line) for line in (tmp_path / "fine" / "log.jsonl").read_text().splitlines()]
    assert record["val_images"] == 8 and record["data_pipeline"] == "cpu" and record["train_share_maskmix"] > 0
    assert "train_alpha_mean" in record
    state = torch.load(tmp_path / "fine" / ckpt.LAST, weights_only=True)
    assert state["config"]["num_classes"] == 10 and state["model"]["head.weight"].shape == (10, 32)
    assert state["data"]["classes"][:2] == ["airplane", "automobile"] and state["data"]["train_images"] == 20


def test_pretrained_flag_loads_timm_weights_from_a_file(run, tmp_path):
    """--pretrained is timm's own loading (pretrained_cfg_overlay names a local file: there is no
    network here): every weight but the classifier comes from the file."""
    out = tmp_path / "deit.safetensors"
    ckpt.export_weights(run["last"], out)
    trained = torch.load(run["last"], weights_only=True)["model"]
    config = parse_args([*TINY, "--num-classes", "2", "--pretrained", "--model-kwargs", "patch_size=8",
                         "embed_dim=32", "depth=2", "num_heads=2", f"pretrained_cfg_overlay={{'file': '{out}'}}"])
    model = build_model(config)
    assert model.head.weight.shape == (2, 32)
    assert all(torch.equal(value, trained[key]) for key, value in model.state_dict().items()
               if not key.startswith("head."))
    missing = parse_args([*TINY, "--pretrained", "--model-kwargs", "patch_size=8", "embed_dim=32", "depth=2",
                          "num_heads=2", f"pretrained_cfg_overlay={{'file': '{tmp_path / 'absent.safetensors'}'}}"])
    from pretrain.errors import ConfigError
    with pytest.raises(ConfigError, match="--pretrained: timm could not load pretrained weights"):
        build_model(missing)
