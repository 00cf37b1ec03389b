"""What both converters (``segmentation.convert``, ``detection.convert``) do around their key mapping:
read one of our checkpoints, check the converted weights against a config's backbone, write the result
atomically with its metadata."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import torch

from pretrain.checkpoint import check_state_dict, load_model_weights, save_atomic


def build_backbone(config_path: str, registry) -> torch.nn.Module:
    """The backbone of an OpenMMLab config, built without its pretrained initialisation."""
    from mmengine.config import Config

    backbone_cfg = dict(Config.fromfile(config_path).model.backbone)
    backbone_cfg.pop("init_cfg", None)
    return registry.build(backbone_cfg)


def convert_file(checkpoint: str, out: str, convert: Callable[[Dict[str, torch.Tensor]], Dict[str, torch.Tensor]],
                 target: str, backbone: Optional[torch.nn.Module] = None, what: str = "",
                 resizable: Tuple[str, ...] = ()) -> Dict:
    """Converts ``checkpoint``'s weights with ``convert``, checks them key by key against ``backbone``
    when given (``resizable`` keys may differ in shape) and writes ``{'state_dict', 'meta'}`` to ``out``."""
    weights, meta = load_model_weights(Path(checkpoint))
    converted = convert(weights)
    if backbone is not None:
        check_state_dict(converted, backbone.state_dict(), what or f"{checkpoint} -> {target}", resizable=resizable)
    result = {"state_dict": converted, "meta": {**meta, "converted_for": target}}
    save_atomic(result, Path(out))
    return result
