"""mmdet side of the suite: strict PVT v1 -> mmdet PVT conversion (``custom_imports`` registers
``StrictLoadPVT``)."""
from .backbones import StrictLoadPVT
from .convert import convert_for_mmdet, load_for_mmdet, pvt_v1_to_mmdet

__all__ = ["convert_for_mmdet", "StrictLoadPVT", "load_for_mmdet", "pvt_v1_to_mmdet"]
