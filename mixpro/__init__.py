"""MixPro: MaskMix + Progressive Attention Labeling for vision transformers (library only).

The public API: the mixers (:class:`MixPro`, :class:`TransMix`, :class:`MixupCutMix`, :class:`NoMix`,
:class:`BatchMixer`), :class:`ClsAttention` and :func:`soft_target_cross_entropy`; building blocks live
in :mod:`mixpro.mask`, :mod:`mixpro.label` and :mod:`mixpro.attention`; :mod:`mixpro.adapters` reads the
attention of timm's families.
"""
from . import adapters  # noqa: F401  (registers timm's families)
from .attention import (AttentionOutput, AttentionSite, ClsAttention, adapter_families, attention_site,
                        find_attention_site, register_attention_adapter)
from .label import soft_target_cross_entropy
from .mask import MaskMixGenerator
from .mixer import MIXERS, BatchMixer, MixedBatch, MixPro, MixupCutMix, NoMix, TransMix, build_mixer

__version__ = "0.1.0"

__all__ = [
    "AttentionOutput",
    "AttentionSite",
    "BatchMixer",
    "ClsAttention",
    "MIXERS",
    "MaskMixGenerator",
    "MixPro",
    "MixedBatch",
    "MixupCutMix",
    "NoMix",
    "TransMix",
    "adapter_families",
    "attention_site",
    "build_mixer",
    "find_attention_site",
    "register_attention_adapter",
    "soft_target_cross_entropy",
]
