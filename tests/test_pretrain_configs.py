"""Every pretraining config of configs/pretrain builds its model and its mixer (attention adapter found,
MaskMix cells on whole tokens of the attention's grid), so a config that would fail at start-up on a
cluster fails here first."""
from pathlib import Path

import pytest
import torch

from pretrain.builder import build_mixer, build_model
from pretrain.config import parse_args
from pretrain.errors import ConfigError

PRETRAIN = Path(__file__).resolve().parents[1] / "configs" / "pretrain"
CONFIGS = sorted(path for path in [*PRETRAIN.glob("*.yaml"), *PRETRAIN.glob("ablations/*.yaml")]
                 if not path.name.startswith("_"))


@pytest.mark.parametrize("path", CONFIGS, ids=[path.stem for path in CONFIGS])
def test_config_builds_model_and_mixer(path):
    config = parse_args(["--config", str(path)])
    if config.num_classes is None:  # a run counts them in its data
        config.num_classes = 10 if config.dataset == "torch/cifar10" else 1000
    with torch.device("meta"):
        model = build_model(config)
    mixer = build_mixer(config, model)
    mixer.set_progress(0, config.epochs)
    kind = "maskmix" if config.maskmix_prob > 0 else "cutmix" if config.cutmix > 0 else "mixup"
    size = config.input_size
    batch = mixer(torch.rand(2, 3, size, size), torch.tensor([0, 1]), kind=kind)  # the recipe's own batch kind
    assert batch.images.shape == (2, 3, size, size) and batch.kind == kind
    if path.parent.name == "ablations":  # one row of a table: the recipe is named after it
        assert config.recipe == path.stem
    elif "ablation" not in path.stem:  # model_recipe.yaml
        assert config.recipe == path.stem.rsplit("_", 1)[-1]
    assert mixer.uses_attention == (config.recipe != "baseline" and config.maskmix_label != "area")
    assert config.output_dir.endswith(path.stem)


def test_deit_base_takes_transmix_settings_over_the_policy():
    config = parse_args(["--config", str(PRETRAIN / "deit_base_mixpro.yaml")])
    assert (config.model, config.recipe, config.maskmix_label) == ("deit_base_patch16_224", "mixpro", "pal")
    assert (config.batch_size * 8, config.lr, config.lr_base_batch, config.warmup_epochs) == (256, 1e-3, 256, 5)
    assert config.model_ema and config.mixup_switch_prob == 0.8 and config.reprob == 0.0


def test_timm_flag_names(tmp_path):
    """timm's train.py spellings mean what they mean there; YAML takes the suite's own keys only."""
    config = parse_args(["--input-size", "3", "96", "96", "--amp-dtype", "float16", "--torchcompile", "--data-dir",
                         "somewhere", "--grad-accum-steps", "4", "--mixup-off-epoch", "250"])
    assert (config.input_size, config.amp, config.compile, config.compile_backend) == (96, "fp16", True, "inductor")
    assert (config.data_path, config.grad_accum_steps, config.mixup_off_epoch, config.num_classes) == (
        "somewhere", 4, 250, None)
    assert not hasattr(config, "torchcompile")
    config = parse_args(["--img-size", "64", "--torchcompile", "eager", "--amp-dtype", "bfloat16"])
    assert (config.input_size, config.compile_backend, config.amp) == (64, "eager", "bf16")
    for bad in (["--input-size", "3", "96", "64"], ["--input-size", "1", "96", "96"], ["--input-size", "96", "96"]):
        with pytest.raises(SystemExit):
            parse_args(bad)
    (tmp_path / "timm.yaml").write_text("input_size: [3, 80, 80]\n")
    assert parse_args(["--config", str(tmp_path / "timm.yaml")]).input_size == 80
    (tmp_path / "alias.yaml").write_text("amp_dtype: float16\n")
    with pytest.raises(ConfigError, match="unknown option.*amp_dtype"):
        parse_args(["--config", str(tmp_path / "alias.yaml")])
    with pytest.raises(ConfigError, match="--grad-accum-steps 0 must be >= 1"):
        parse_args(["--grad-accum-steps", "0"])
    # a child config can hand the class count back to the data over a base that sets it
    (tmp_path / "child.yaml").write_text(f"_base_: {PRETRAIN.parent / 'demo' / '_digits.yaml'}\nnum_classes: null\n")
    assert parse_args(["--config", str(PRETRAIN.parent / "demo" / "_digits.yaml")]).num_classes == 8
    assert parse_args(["--config", str(tmp_path / "child.yaml")]).num_classes is None


STUDIES = sorted((PRETRAIN.parent / "studies").glob("*.yaml"))


@pytest.mark.parametrize("path", STUDIES, ids=[path.stem for path in STUDIES])
def test_study_config_resolves_every_setting(path, tmp_path, monkeypatch):
    """Each study file of configs/studies passes the study's own checks (every setting resolved as
    tools/train.py resolves it) with a data folder given on the command line, as its header says."""
    import sys

    from studies import load_study

    sys.path.insert(0, str(Path(__file__).parent))
    from imagefolder import make_image_folder

    data = make_image_folder(tmp_path / "data", per_class_train=1, per_class_val=1, size=8)
    monkeypatch.chdir(PRETRAIN.parents[1])  # the study's relative paths are the repository's
    study = load_study(path, output=str(tmp_path / "out"), overrides={"data_path": str(data)})
    assert study.reference in [setting.name for setting in study.settings] and len(study.settings) >= 2
    assert len({(setting.config, setting.flags) for setting in study.settings}) == len(study.settings)  # distinct
