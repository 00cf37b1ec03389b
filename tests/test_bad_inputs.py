"""Bad inputs as a new user makes them, through the command-line tools: each ends in one ``error:`` line
that says what was wrong (and, where it helps, what to do), never in a traceback. Errors of the
report come before its first image is read. A few run as real subprocesses; MIXPRO_DEBUG=1 brings
the traceback back."""
import logging
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pretrain import checkpoint as ckpt
from pretrain.config import parse_args
from pretrain.main import main as pretrain

sys.path.insert(0, str(Path(__file__).parent))
from imagefolder import CLASS_NAMES, make_image_folder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--model", "vit_tiny_patch16_224", "--model-kwargs", "patch_size=8", "embed_dim=32", "depth=2", "num_heads=2",
        "--input-size", "32", "--mask-patch-size", "16", "--num-classes", "4", "--batch-size", "8",
        "--warmup-epochs", "0", "--auto-augment", "", "--reprob", "0", "--workers", "0", "--device", "cpu",
        "--amp", "none", "--eval-crop-pct", "1.0"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small dataset, a one-epoch run, its export, and the bad files and folders of the cases."""
    root = tmp_path_factory.mktemp("bad")
    data = make_image_folder(root / "data", size=40, per_class_train=4, per_class_val=2)
    pretrain(parse_args([*TINY, "--epochs", "1", "--data-path", str(data), "--output-dir", str(root / "run")]))
    ckpt.export_weights(root / "run" / ckpt.LAST, root / "export.pth")
    empty_class = make_image_folder(root / "empty_class", size=40, per_class_train=2, per_class_val=2)
    (empty_class / "train" / "n09999999").mkdir()
    (empty_class / "val" / "n09999999").mkdir()
    (root / "no_train").mkdir()
    (root / "empty.pth").write_bytes(b"")
    (root / "notes.pth").write_text("best top-1 71.3 at epoch 287\n")
    torch.save({"model": Path("x")}, root / "objects.pth")
    torch.save({"weight": torch.zeros(2)}, root / "bare.pth")
    (root / "a_file").write_text("")
    (root / "classes3.txt").write_text("\n".join(CLASS_NAMES[:3]) + "\n")
    (root / "classes4.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    (root / "not_a_log.jsonl").write_text("epoch,loss\n0,1.2\n")
    for name, text in {"amp.yaml": "amp: bf61\n", "interp.yaml": "interpolation: bicubik\n",
                       "typo.yaml": "lerning_rate: 0.1\n", "broken.yaml": "lr: [0.1\n", "lr.yaml": "lr: fast\n",
                       "flag.yaml": "model_ema: 3\n"}.items():
        (root / name).write_text(text)
    (root / "study_typo.yaml").write_text(f"seeds: 2\noverrides: {{data_path: {data}, lerning_rate: 0.1}}\nsettings:\n"
                                          f"  - {ROOT / 'configs' / 'demo' / 'deit_tiny_digits_mixpro.yaml'}\n")
    (root / "shifted" / "n00000000").mkdir(parents=True)
    (root / "elsewhere.pth").write_bytes(b"PK")
    (root / "work").mkdir()
    (root / "work" / "last_checkpoint").write_text(str(root / "elsewhere.pth"))
    return root


def train_args(files, *extra, data="data"):
    return [*TINY, "--epochs", "1", "--data-path", str(files / data), "--output-dir", str(files / "fresh"), *extra]


def report_args(files, *extra):
    return ["--checkpoint", str(files / "export.pth"), "--classes", str(files / "classes4.txt"),
            "--val", str(files / "data" / "val"), "--out", str(files / "report"), "--device", "cpu", "--workers", "0",
            *extra]


# (case, tool, arguments given the fixture folder, what the error line must say)
CASES = [
    # pretraining: values, from YAML as from flags
    ("yaml-amp", "train.py", lambda f: train_args(f, "--config", f / "amp.yaml"), "amp: 'bf61' is not one of bf16"),
    ("yaml-interpolation", "train.py", lambda f: train_args(f, "--config", f / "interp.yaml"),
     "interpolation: 'bicubik' is not one of bicubic"),
    ("flag-interpolation", "train.py", lambda f: train_args(f, "--interpolation", "bicubik"),
     "argument --interpolation: invalid choice: 'bicubik'"),
    ("yaml-typo", "train.py", lambda f: train_args(f, "--config", f / "typo.yaml"), "unknown option(s) lerning_rate"),
    ("yaml-syntax", "train.py", lambda f: train_args(f, "--config", f / "broken.yaml"), "is not valid YAML"),
    ("yaml-type", "train.py", lambda f: train_args(f, "--config", f / "lr.yaml"), "lr: 'fast' is not a float"),
    ("yaml-flag", "train.py", lambda f: train_args(f, "--config", f / "flag.yaml"), "model_ema: 3 is not true or false"),
    ("config-missing", "train.py", lambda f: train_args(f, "--config", f / "none.yaml"), "none.yaml' does not exist"),
    ("batch-zero", "train.py", lambda f: train_args(f, "--batch-size", "0"), "--batch-size 0 must be >= 1"),
    ("lr-negative", "train.py", lambda f: train_args(f, "--lr", "-1"), "--lr -1.0 must be > 0"),
    ("workers-negative", "train.py", lambda f: train_args(f, "--workers", "-1"), "--workers -1 must be >= 0"),
    ("smoothing", "train.py", lambda f: train_args(f, "--smoothing", "1.5"), "--smoothing 1.5 must be in [0, 1)"),
    ("crop-scale", "train.py", lambda f: train_args(f, "--crop-scale", "0.9", "0.1"), "--crop-scale [0.9, 0.1] must be"),
    ("model-name", "train.py", lambda f: train_args(f, "--model", "deit_smal_patch16_224"),
     "is not a timm model (did you mean deit_small_patch16_224"),
    ("optimizer", "train.py", lambda f: train_args(f, "--opt", "adamx"), "--opt 'adamx' is not a timm optimizer"),
    ("model-kwargs", "train.py", lambda f: train_args(f, "--model-kwargs", "depht=2"), "does not take them"),
    ("auto-augment", "train.py", lambda f: train_args(f, "--auto-augment", "bogus"), "is not a timm auto-augment"),
    ("device", "train.py", lambda f: train_args(f, "--device", "tpu"), "--device 'tpu': expected auto"),
    ("class-map", "train.py", lambda f: train_args(f, "--class-map", f / "none.txt"),
     ("--class-map", "none.txt' does not exist")),
    ("mask-single-cell", "train.py", lambda f: train_args(f, "--mask-patch-size", "64"),
     "mask_patch_size=64 px makes a single MaskMix cell on 32x32 images"),
    ("mask-not-multiple", "train.py", lambda f: train_args(f, "--mask-patch-size", "12"),
     "mask_patch_size=12 must be a positive multiple of patch_size=8"),
    ("initial-checkpoint-absent", "train.py", lambda f: train_args(f, "--initial-checkpoint", f / "none.pth"),
     ("--initial-checkpoint", "none.pth' does not exist")),
    ("initial-checkpoint-text", "train.py", lambda f: train_args(f, "--initial-checkpoint", f / "notes.pth"),
     "is not a PyTorch checkpoint"),
    # pretraining: data
    ("data-path-missing", "train.py", lambda f: [*TINY, "--output-dir", str(f / "fresh")], "--data-path is required"),
    ("data-path-absent", "train.py", lambda f: train_args(f, data="nowhere"), "does not exist or is not a folder"),
    ("data-no-train", "train.py", lambda f: train_args(f, data="no_train"), "found neither"),
    ("data-empty-class", "train.py", lambda f: train_args(f, "--num-classes", "5", data="empty_class"),
     "class folder(s) without images: ['n09999999']"),
    ("dataset-unknown", "train.py", lambda f: train_args(f, "--dataset", "torch/nosuch"),
     "--dataset torch/nosuch could not read split 'train'"),
    ("accumulation-zero", "train.py", lambda f: train_args(f, "--grad-accum-steps", "0"),
     "--grad-accum-steps 0 must be >= 1"),
    ("data-class-count", "train.py", lambda f: train_args(f, "--num-classes", "5"),
     "4 class folders but --num-classes is 5 (leave it out to take the count from the data)"),
    # pretraining: resume
    ("resume-absent", "train.py", lambda f: train_args(f, "--resume", f / "none.pth"), "no such checkpoint"),
    ("resume-empty", "train.py", lambda f: train_args(f, "--resume", f / "empty.pth"), "is empty (0 bytes)"),
    ("resume-text", "train.py", lambda f: train_args(f, "--resume", f / "notes.pth"), "is not a PyTorch checkpoint"),
    ("resume-objects", "train.py", lambda f: train_args(f, "--resume", f / "objects.pth"),
     "holds Python objects beyond tensors"),
    ("resume-export", "train.py", lambda f: train_args(f, "--resume", f / "export.pth"),
     "is not a training checkpoint (an exported model"),
    ("resume-changed", "train.py", lambda f: [*TINY, "--epochs", "1", "--data-path", str(f / "data"), "--output-dir",
                                               str(f / "run"), "--resume", "auto", "--lr", "0.5"],
     "differs from the run it resumes: --lr: 0.001 -> 0.5"),
    ("fresh-over-run", "train.py", lambda f: [*TINY, "--epochs", "1", "--data-path", str(f / "data"), "--output-dir",
                                               str(f / "run")], "already holds a run"),
    # robustness report: everything checked before the first image
    ("report-shifted-absent", "robustness_report.py", lambda f: report_args(f, "--shifted", f / "nowhere"),
     ("--shifted", "nowhere does not exist or is not a folder")),
    ("report-second-checkpoint-absent", "robustness_report.py",
     lambda f: report_args(f, "--checkpoint", f / "none.pth"), "none.pth' does not exist"),
    ("report-second-checkpoint-text", "robustness_report.py",
     lambda f: report_args(f, "--checkpoint", f / "notes.pth"), "is not a PyTorch checkpoint"),
    ("report-bare-state-dict", "robustness_report.py", lambda f: report_args(f, "--checkpoint", f / "bare.pth"),
     "bare state dict with no architecture"),
    ("report-timm-weights-absent", "robustness_report.py",
     lambda f: report_args(f, "--checkpoint", f"deit_tiny_patch16_224={f / 'none.pth'}"), "does not exist"),
    ("report-out-unwritable", "robustness_report.py", lambda f: report_args(f, "--out", f / "a_file" / "report"),
     "cannot write the report there"),
    ("report-ood-without-val", "robustness_report.py",
     lambda f: ["--checkpoint", str(f / "export.pth"), "--ood", str(f / "data" / "val"), "--out", str(f / "r")],
     "--ood needs --val"),
    ("report-no-data", "robustness_report.py", lambda f: ["--checkpoint", str(f / "export.pth"), "--out", str(f / "r")],
     "no data given"),
    ("report-classes-absent", "robustness_report.py", lambda f: report_args(f, "--classes", f / "none.txt"),
     ("--classes", "none.txt does not exist")),
    ("report-label-space", "robustness_report.py", lambda f: report_args(f, "--classes", f / "classes3.txt"),
     "predicts 4 classes but the label space, --classes"),
    ("report-foreign-folder", "robustness_report.py",
     lambda f: ["--checkpoint", str(f / "export.pth"), "--classes", str(f / "classes4.txt"), "--shifted",
                str(f / "shifted"), "--out", str(f / "r"), "--device", "cpu"], "has folders that are not IN-A classes: ['n00000000']"),
    ("report-dino-absent", "robustness_report.py", lambda f: report_args(f, "--dino", f / "none.pth"),
     ("--dino", "none.pth does not exist")),
    ("report-dino-input-size", "robustness_report.py", lambda f: report_args(f, "--dino", f / "export.pth"),
     "--dino saliency is computed at 224 px"),
    ("report-timm-weights-text", "robustness_report.py",
     lambda f: report_args(f, "--checkpoint", f"deit_tiny_patch16_224={f / 'notes.pth'}"), "is not a PyTorch checkpoint"),
    ("report-timm-name", "robustness_report.py",
     lambda f: report_args(f, "--checkpoint", f"deit_tiny_patch99={f / 'export.pth'}"), "is not a timm model name"),
    ("report-batch-zero", "robustness_report.py", lambda f: report_args(f, "--batch-size", "0"),
     "--batch-size must be >= 1"),
    # the other tools
    ("export-of-export", "export_checkpoint.py", lambda f: [f / "export.pth", f / "again.pth"],
     "is not a training checkpoint"),
    ("export-absent", "export_checkpoint.py", lambda f: [f / "none.pth", f / "again.pth"], "does not exist"),
    ("export-ema", "export_checkpoint.py", lambda f: [f / "run" / ckpt.LAST, f / "again.pth", "--ema"],
     "no EMA weights"),
    ("convert-text", "convert_checkpoint.py", lambda f: ["--to", "mmseg", f / "notes.pth", f / "out.pth"],
     "is not a PyTorch checkpoint"),
    ("plot-log-absent", "plot_training.py", lambda f: [f / "none.jsonl", "--out", f / "plots"], "does not exist"),
    ("plot-not-a-log", "plot_training.py", lambda f: [f / "not_a_log.jsonl", "--out", f / "plots"],
     "line 1 is not an epoch record"),
    ("mixing-single-cell", "visualize_mixing.py",
     lambda f: ["--checkpoint", f / "run" / ckpt.LAST, "--mask-patch-size", "64", "--out", f / "m.png"],
     "single MaskMix cell on 32x32 images"),
    ("mixing-images-absent", "visualize_mixing.py",
     lambda f: ["--checkpoint", f / "export.pth", "--images", f / "nowhere", "--out", f / "m.png"], "does not exist"),
    ("seg-config-absent", "seg_train.py", lambda f: [f / "none.py"], ("config file", "none.py does not exist")),
    ("det-config-absent", "det_train.py", lambda f: [f / "none.py"], ("config file", "none.py does not exist")),
    ("seg-test-data-absent", "seg_test.py",
     lambda f: [ROOT / "configs" / "demo" / "linear_deit-tiny_digits.py", f / "none.pth", "--cfg-options",
                f"test_dataloader.dataset.data_root={f / 'nowhere'}"], ("test_dataloader dataset", "nowhere does not exist")),
    ("det-test-config-absent", "det_test.py", lambda f: [f / "none.py", f / "none.pth"], "none.py does not exist"),
    ("study-absent", "study.py", lambda f: [f / "none.yaml"], "none.yaml"),
    ("study-unknown-option", "study.py", lambda f: [f / "study_typo.yaml"], ("overrides.lerning_rate", "not an option of tools/train.py")),
    ("augment-image-absent", "visualize_augment.py", lambda f: ["--images", f / "none.jpg", "--out", f / "g.png"],
     "image(s) not found"),
    ("demo-foreign-folder", "run_demo.py", lambda f: ["--out", f / "data", "--quick"],
     "is not empty and was not written by the demo"),
    ("seg-resume-outside-work-dir", "seg_train.py",
     lambda f: [ROOT / "configs" / "demo" / "linear_deit-tiny_digits.py", "--work-dir", f / "work", "--resume"],
     "outside the work dir"),
]
if not torch.cuda.is_available():
    CASES.append(("device-cuda", "train.py", lambda f: train_args(f, "--device", "cuda"),
                  "CUDA is not available here"))


def run_tool(tool, argv, monkeypatch, capsys):
    """``python tools/TOOL ARGV`` in this process; returns (exit status, stderr)."""
    monkeypatch.setattr(sys, "argv", [str(ROOT / "tools" / tool), *map(str, argv)])
    monkeypatch.setattr(logging.root, "handlers", [])  # a fresh process has none; the last case's wrote to its capture
    monkeypatch.delenv("MIXPRO_DEBUG", raising=False)
    with pytest.raises(SystemExit) as stopped:
        runpy.run_path(str(ROOT / "tools" / tool), run_name="__main__")
    return stopped.value.code, capsys.readouterr().err


def fail_if_called(*args, **kwargs):
    raise AssertionError("the report evaluated a model before checking every input")


@pytest.mark.parametrize("case, tool, make_args, expected", CASES, ids=[case[0] for case in CASES])
def test_bad_input_is_one_error_line(case, tool, make_args, expected, files, monkeypatch, capsys):
    for name in ("evaluate_val", "evaluate_shifted", "evaluate_ood"):
        monkeypatch.setattr(f"robustness.cli.{name}", fail_if_called)
    status, stderr = run_tool(tool, make_args(files), monkeypatch, capsys)
    assert status == 2, stderr
    assert "Traceback" not in stderr
    error_lines = [line for line in stderr.splitlines() if "error:" in line]
    expected = (expected,) if isinstance(expected, str) else expected
    assert len(error_lines) == 1 and all(part in error_lines[0] for part in expected), stderr


def test_the_case_list_covers_every_tool():
    tools = {case[1] for case in CASES}
    assert tools == {path.name for path in (ROOT / "tools").glob("*.py")}
    assert len(CASES) >= 53


def test_real_processes_and_the_debug_switch(files):
    """As typed in a shell: one line, exit status 2; with MIXPRO_DEBUG=1 the traceback is shown."""
    command = [sys.executable, str(ROOT / "tools" / "train.py"), *map(str, train_args(files, "--config",
                                                                                       files / "amp.yaml"))]
    env = {key: value for key, value in os.environ.items() if key != "MIXPRO_DEBUG"}
    quiet = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == 2 and quiet.stderr.strip().splitlines() == [
        f"error: {files / 'amp.yaml'}: amp: 'bf61' is not one of bf16, fp16, none"]
    loud = subprocess.run(command, capture_output=True, text=True, env={**env, "MIXPRO_DEBUG": "1"}, timeout=300)
    assert loud.returncode != 0 and "Traceback" in loud.stderr and "ConfigError" in loud.stderr
