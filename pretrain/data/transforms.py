"""The training and evaluation transforms of a pretraining run, from timm's factory; both data
pipelines start from these objects (the GPU path reads its plan off them)."""
from __future__ import annotations

from typing import Callable, Tuple

import torch
from timm.data import create_transform, resolve_data_config


def build_transforms(config, model: torch.nn.Module) -> Tuple[Callable, Callable]:
    """DeiT train transform and resize/centre-crop eval transform from timm's factory."""
    data_config = resolve_data_config({"input_size": (3, config.input_size, config.input_size),
                                       "interpolation": config.interpolation,
                                       "crop_pct": config.eval_crop_pct}, model=model)
    train = create_transform(
        config.input_size, is_training=True, no_aug=config.no_aug, scale=tuple(config.crop_scale),
        auto_augment=config.auto_augment or None,
        color_jitter=config.color_jitter, re_prob=config.reprob, re_mode=config.remode, re_count=config.recount,
        interpolation=config.interpolation, mean=data_config["mean"], std=data_config["std"],
    )
    evaluation = create_transform(
        config.input_size, is_training=False, interpolation=config.interpolation,
        crop_pct=config.eval_crop_pct, mean=data_config["mean"], std=data_config["std"],
    )
    return train, evaluation
