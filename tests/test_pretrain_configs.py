"""Every pretraining config of configs/pretrain builds its model and its mixer (attention adapter found,
MaskMix cells on whole tokens of the attention's grid), so a config that would fail at start-up on a
cluster fails here first."""
from pathlib import Path

import pytest
import torch

from pretrain.builder import build_mixer, build_model
from pretrain.config import parse_args

CONFIGS = sorted(path for path in (Path(__file__).resolve().parents[1] / "configs" / "pretrain").glob("*.yaml")
                 if not path.name.startswith("_"))


@pytest.mark.parametrize("path", CONFIGS, ids=[path.stem for path in CONFIGS])
def test_config_builds_model_and_mixer(path):
    config = parse_args(["--config", str(path)])
    with torch.device("meta"):
        model = build_model(config)
    mixer = build_mixer(config, model)
    if "ablation" not in path.stem:  # model_recipe.yaml
        assert config.recipe == path.stem.rsplit("_", 1)[-1]
    assert mixer.uses_attention == (config.recipe != "baseline")
    assert config.output_dir.endswith(path.stem)
