"""mmseg side of the suite: strict DeiT -> mmseg ViT conversion (``custom_imports`` registers
``StrictLoadViT``)."""
from .backbones import StrictLoadViT
from .convert import convert_for_mmseg, load_for_mmseg, timm_vit_to_mmseg

__all__ = ["convert_for_mmseg", "StrictLoadViT", "load_for_mmseg", "timm_vit_to_mmseg"]
