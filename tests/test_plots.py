"""Training pictures: logged alpha statistics equal a direct computation; plots are real PNGs."""
import subprocess
import sys
from pathlib import Path

import torch
from PIL import Image

from mixpro import MixPro
from pretrain.engine import LabelStatistics

sys.path.insert(0, str(Path(__file__).parent))
from imagefolder import make_image_folder  # noqa: E402
from test_pretrain import TINY_VIT, run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_logged_alpha_statistics_equal_direct_computation():
    torch.manual_seed(0)
    mixer = MixPro(10, mask_patch_size=32, seed=0)
    images, labels = torch.randn(64, 3, 64, 64), torch.randint(0, 10, (64,))
    stats, alphas = LabelStatistics(torch.device("cpu")), []
    for step in range(3):
        batch = mixer(images, labels, kind="maskmix")
        mixer.targets(batch, torch.randn(64, 10) * 3, torch.rand(64, 16))
        stats.update(batch)
        alphas.append(batch.alpha.detach())
    stats.update(mixer(images, labels, kind="mixup"))  # other kinds only count towards the shares
    summary = stats.summary()
    alpha = torch.cat(alphas).double()
    assert abs(summary["alpha_mean"] - alpha.mean().item()) < 1e-9
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        assert abs(summary[f"alpha_q{int(q * 100):02d}"] - torch.quantile(alpha, q).item()) <= 0.011
    assert summary["share_maskmix"] == 0.75 and summary["share_mixup"] == 0.25


def test_plot_training_writes_pngs(tmp_path):
    data = make_image_folder(tmp_path / "data", per_class_train=8, per_class_val=2, size=40)
    for recipe in ("transmix", "mixpro"):
        run(recipe, TINY_VIT, data, tmp_path / recipe, "--epochs", "2")
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "plot_training.py"),
                             str(tmp_path / "transmix" / "log.jsonl"), str(tmp_path / "mixpro" / "log.jsonl"),
                             "--out", str(tmp_path / "plots")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    for name in ("alpha", "loss", "top1", "error"):
        with Image.open(tmp_path / "plots" / f"{name}.png") as image:
            assert image.size == (720, 480)
            assert len(set(image.convert("L").getdata())) > 10  # something was drawn
    missing = subprocess.run([sys.executable, str(ROOT / "tools" / "plot_training.py"), str(tmp_path / "nope.jsonl"),
                              "--out", str(tmp_path / "p")], capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and "does not exist" in missing.stderr


def test_visualize_mixing_writes_the_grid(tmp_path):
    out = tmp_path / "mixing.png"
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "visualize_mixing.py"), "--max-images", "3",
                             "--model", "deit_tiny_patch16_224", "--mask-patch-size", "32", "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with Image.open(out) as image:
        assert image.size == (600, 800)  # 3 columns x 4 rows of 200 px
        assert len(set(image.convert("L").getdata())) > 100
