"""The training and evaluation transforms of a pretraining run, from timm's factory; both data
pipelines start from these objects (the GPU path reads its plan off them). :func:`eval_transform` is
the one evaluation transform: pretraining's validation and the robustness report use it alike."""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

import torch
from timm.data import create_transform, resolve_data_config
from torchvision import transforms

from ..errors import ConfigError


def eval_transform(input_size: int, interpolation: str, crop_pct: float, mean: Optional[Sequence[float]] = None,
                   std: Optional[Sequence[float]] = None) -> Callable:
    """Resize the shorter side to floor(input_size / crop_pct) with ``interpolation``, centre crop
    ``input_size``; normalised by mean/std, or a [0, 1] tensor when they are None (the robustness
    report normalises on the device, after occlusion)."""
    normalized = create_transform(input_size, is_training=False, interpolation=interpolation, crop_pct=crop_pct,
                                  **({"mean": tuple(mean), "std": tuple(std)} if mean is not None else {}))
    if mean is not None and std is not None:
        return normalized
    # timm's normalize=False also skips the float conversion (uint8 out): drop just its Normalize step
    return transforms.Compose([step for step in normalized.transforms if not isinstance(step, transforms.Normalize)])


def build_transforms(config, model: torch.nn.Module) -> Tuple[Callable, Callable]:
    """DeiT train transform and resize/centre-crop eval transform from timm's factory."""
    data_config = resolve_data_config({"input_size": (3, config.input_size, config.input_size),
                                       "interpolation": config.interpolation,
                                       "crop_pct": config.eval_crop_pct}, model=model)
    try:
        train = create_transform(
            config.input_size, is_training=True, no_aug=config.no_aug, scale=tuple(config.crop_scale),
            auto_augment=config.auto_augment or None,
            color_jitter=config.color_jitter, re_prob=config.reprob, re_mode=config.remode, re_count=config.recount,
            interpolation=config.interpolation, mean=data_config["mean"], std=data_config["std"],
        )
    except (AssertionError, KeyError, ValueError) as error:  # timm's parser of the auto-augment string
        raise ConfigError(f"--auto-augment {config.auto_augment!r} is not a timm auto-augment string (e.g. "
                          f"rand-m9-mstd0.5-inc1, augmix-m5-w4-d2, original; '' for none): {error!r}") from None
    evaluation = eval_transform(config.input_size, config.interpolation, config.eval_crop_pct, data_config["mean"],
                                data_config["std"])
    return train, evaluation
