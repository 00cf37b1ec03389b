"""mmseg's VisionTransformer that loads our checkpoints strictly (registered as ``StrictLoadViT``)."""
from __future__ import annotations

import math

from mmengine.logging import print_log
from mmseg.models.backbones import VisionTransformer
from mmseg.registry import MODELS

from .convert import load_for_mmseg


@MODELS.register_module()
class StrictLoadViT(VisionTransformer):
    """``init_cfg=dict(type='Pretrained', checkpoint=PATH)`` with PATH one of our checkpoints (export,
    training checkpoint or timm state dict of a DeiT/ViT): converted, checked key by key, the position
    embedding resized to this model's grid, and loaded with ``strict=True``."""

    def init_weights(self) -> None:
        if not (isinstance(self.init_cfg, dict) and self.init_cfg.get("type") == "Pretrained"):
            super().init_weights()
            return
        weights, meta = load_for_mmseg(self.init_cfg["checkpoint"], self)
        pos = weights["pos_embed"]
        if pos.shape != self.pos_embed.shape:
            side = int(math.sqrt(pos.shape[1] - 1))
            grid = (self.img_size[0] // self.patch_size, self.img_size[1] // self.patch_size)
            weights["pos_embed"] = self.resize_pos_embed(pos, grid, (side, side), self.interpolate_mode)
        self.load_state_dict(weights, strict=True)
        print_log(f"loaded {meta.get('arch')} ({meta.get('recipe') or 'no recipe'}) from "
                  f"{self.init_cfg['checkpoint']} strictly", logger="current")
