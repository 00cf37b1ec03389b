"""Resuming: the saved configuration is the run's identity; the schedule extends with --epochs; allowed
changes are applied and recorded; a killed run's leftovers are repaired (CPU, tiny ViT)."""
import csv
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from pretrain import checkpoint as ckpt
from pretrain.config import parse_args
from pretrain.errors import CheckpointError, ConfigError
from pretrain.main import main

sys.path.insert(0, str(Path(__file__).parent))
from imagefolder import make_image_folder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--config", str(ROOT / "configs" / "pretrain" / "deit_small_mixpro.yaml"),
        "--model", "vit_tiny_patch16_224", "--model-kwargs", "patch_size=8", "embed_dim=32", "depth=2", "num_heads=2",
        "--input-size", "32", "--mask-patch-size", "16", "--num-classes", "4", "--batch-size", "8",
        "--warmup-epochs", "0", "--lr-base-batch", "0", "--lr", "2e-3", "--min-lr", "1e-5", "--auto-augment", "",
        "--reprob", "0", "--color-jitter", "0", "--workers", "0", "--device", "cpu", "--amp", "none",
        "--print-freq", "4", "--eval-crop-pct", "1.0", "--drop-path", "0.0"]
STEPS = 12  # 96 training images / batch 8


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("imagenet"), size=40)


def train(data_root, out, *extra):
    main(parse_args([*TINY, "--data-path", str(data_root), "--output-dir", str(out), *extra]))
    return log_of(out)


def log_of(out):
    return [json.loads(line) for line in (Path(out) / "log.jsonl").read_text().splitlines()]


def cosine(step, total, base, low=1e-5):
    return low + 0.5 * (base - low) * (1 + math.cos(math.pi * step / total))


def test_a_changed_setting_stops_before_any_work(data_root, tmp_path):
    train(data_root, tmp_path, "--epochs", "1")
    before = (tmp_path / ckpt.LAST).read_bytes()
    with pytest.raises(ConfigError) as error:
        train(data_root, tmp_path, "--epochs", "2", "--resume", "auto", "--lr", "0.01", "--recipe", "other",
              "--batch-size", "4")
    message = str(error.value)
    for part in ("--lr: 0.002 -> 0.01", "--recipe: 'mixpro' -> 'other'", "--batch-size: 8 -> 4",
                 "global batch (processes x --batch-size x --grad-accum-steps): 8 -> 4", "--resume-allow-change"):
        assert part in message
    assert "--epochs" not in message  # free to change
    assert (tmp_path / ckpt.LAST).read_bytes() == before and len(log_of(tmp_path)) == 1


def test_more_epochs_extend_the_schedule(data_root, tmp_path, capfd):
    train(data_root, tmp_path, "--epochs", "2")
    capfd.readouterr()
    log = train(data_root, tmp_path, "--epochs", "4", "--resume", "auto")
    logged = capfd.readouterr().err
    assert [row["epoch"] for row in log] == [0, 1, 2, 3]
    assert log[1]["train_lr"] == pytest.approx(cosine(2 * STEPS, 2 * STEPS, 2e-3), rel=1e-6)  # the old schedule's end
    # the schedule is the one of 4 epochs from the resumed step on
    assert log[2]["train_lr"] == pytest.approx(cosine(3 * STEPS, 4 * STEPS, 2e-3), rel=1e-6)
    assert log[2]["resumed"]["changes"] == {"epochs": [2, 4]}
    assert "schedule extended from 2 to 4 epochs" in logged
    assert "resumed" not in log[3]
    history = torch.load(tmp_path / ckpt.LAST, weights_only=True)["config_history"]
    assert [entry["epoch"] for entry in history] == [2]


def test_an_allowed_change_is_applied_and_recorded(data_root, tmp_path):
    train(data_root, tmp_path, "--epochs", "1")
    log = train(data_root, tmp_path, "--epochs", "3", "--resume", "auto", "--lr", "0.01", "--weight-decay", "0.1",
                "--resume-allow-change", "lr", "weight-decay")
    # mid-schedule, so the value depends on the base lr: 0.01's cosine, not 0.002's
    assert log[1]["train_lr"] == pytest.approx(cosine(2 * STEPS, 3 * STEPS, 0.01), rel=1e-6)
    assert log[1]["resumed"]["changes"]["lr"] == [0.002, 0.01]
    state = torch.load(tmp_path / ckpt.LAST, weights_only=True)
    assert state["config"]["lr"] == 0.01 and state["config_history"][0]["changes"]["weight_decay"] == [0.05, 0.1]
    decays = {group["weight_decay"] for group in state["optimizer"]["param_groups"]}
    assert decays == {0.0, 0.1}  # the new decay reached the optimizer (norms and biases stay undecayed)


def test_a_change_of_optimizer_layout_starts_the_moments_afresh(data_root, tmp_path, capfd):
    """Weight decay 0 puts every parameter in one group (timm): the saved moments of two groups do not
    fit, so the optimizer state starts afresh, with a warning, instead of failing."""
    train(data_root, tmp_path, "--epochs", "1")
    capfd.readouterr()
    log = train(data_root, tmp_path, "--epochs", "2", "--resume", "auto", "--weight-decay", "0",
                "--resume-allow-change", "weight_decay")
    assert "optimizer state not restored" in capfd.readouterr().err
    assert [row["epoch"] for row in log] == [0, 1]
    groups = torch.load(tmp_path / ckpt.LAST, weights_only=True)["optimizer"]["param_groups"]
    assert [group["weight_decay"] for group in groups] == [0.0]


def test_the_model_can_never_change(data_root, tmp_path):
    train(data_root, tmp_path, "--epochs", "1")
    with pytest.raises(ConfigError, match="weights belong to another model: --model-kwargs"):
        train(data_root, tmp_path, "--epochs", "2", "--resume", "auto", "--model-kwargs", "depth=3",
              "--resume-allow-change", "model_kwargs")


def test_a_fresh_run_does_not_write_over_another(data_root, tmp_path, capfd):
    train(data_root, tmp_path, "--epochs", "1", "--resume", "auto")
    assert "no checkpoint in" in capfd.readouterr().err
    with pytest.raises(ConfigError, match="already holds a run .*--resume auto"):
        train(data_root, tmp_path, "--epochs", "1")


def test_a_killed_run_is_repaired_on_resume(data_root, tmp_path, capfd):
    """Damaged checkpoint_last.pth and checkpoint_best.pth, a log without its last line (killed between checkpoint and log)
    and a temporary file of an unfinished write: resume takes the newest readable checkpoint, restores
    the log line from it, drops later lines, and removes the temporary file."""
    train(data_root, tmp_path, "--epochs", "3", "--save-every", "2")
    log = log_of(tmp_path)
    (tmp_path / ckpt.LAST).write_bytes((tmp_path / ckpt.LAST).read_bytes()[:1000])
    (tmp_path / ckpt.BEST).write_text("not a checkpoint")
    # epoch 1's line lost, and a line torn by the kill
    lines = [json.dumps(row) for row in log[:1]] + [json.dumps({**log[2], "epoch": 2}), '{"epoch": 2, "train_lo']
    (tmp_path / "log.jsonl").write_text("\n".join(lines) + "\n")
    stale = tmp_path / ".checkpoint_last.pth.tmp4242"
    stale.write_bytes(b"\0" * 4096)
    capfd.readouterr()
    resumed = train(data_root, tmp_path, "--epochs", "3", "--save-every", "2", "--resume", "auto")
    logged = capfd.readouterr().err
    newest_readable = torch.load(tmp_path / ckpt.epoch_name(2), weights_only=True)
    assert logged.count("skipped a damaged checkpoint") == 2 and "resuming from checkpoint_epoch0002.pth" in logged
    assert [row["epoch"] for row in resumed] == [0, 1, 2] and "1 torn line(s) dropped" in logged
    with open(tmp_path / "summary.csv") as handle:  # timm's summary follows the repaired log
        assert [int(row["epoch"]) for row in csv.DictReader(handle)] == [0, 1, 2]
    assert resumed[1] == json.loads(json.dumps(newest_readable["record"]))  # restored from the checkpoint
    assert resumed[2]["resumed"]["epoch"] == 2
    assert not stale.exists()


def test_an_export_is_not_a_training_checkpoint(data_root, tmp_path):
    train(data_root, tmp_path / "run", "--epochs", "1")
    ckpt.export_weights(tmp_path / "run" / ckpt.LAST, tmp_path / "export.pth")
    with pytest.raises(CheckpointError, match="is not a training checkpoint \\(an exported model"):
        train(data_root, tmp_path / "run", "--epochs", "2", "--resume", str(tmp_path / "export.pth"))
