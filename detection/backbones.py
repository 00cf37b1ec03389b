"""mmdet's PyramidVisionTransformer that loads our PVT v1 checkpoints strictly (``StrictLoadPVT``)."""
from __future__ import annotations

from mmdet.models.backbones import PyramidVisionTransformer
from mmdet.registry import MODELS
from mmengine.logging import print_log

from .convert import load_for_mmdet


@MODELS.register_module()
class StrictLoadPVT(PyramidVisionTransformer):
    """``init_cfg=dict(type='Pretrained', checkpoint=PATH)`` with PATH one of our PVT v1 checkpoints:
    converted, checked key by key and loaded with ``strict=True``."""

    def init_weights(self) -> None:
        if self.init_cfg is None or self.init_cfg.get("type") != "Pretrained":
            super().init_weights()
            return
        weights, meta = load_for_mmdet(self.init_cfg["checkpoint"], self)
        self.load_state_dict(weights, strict=True)
        print_log(f"loaded {meta.get('arch')} ({meta.get('recipe') or 'no recipe'}) from "
                  f"{self.init_cfg['checkpoint']} strictly", logger="current")
