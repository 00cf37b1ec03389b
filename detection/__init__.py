"""mmdet side of the suite: strict PVT v1 -> mmdet PVT conversion (``custom_imports`` registers
``StrictLoadPVT``)."""
from .backbones import StrictLoadPVT
from .convert import load_for_mmdet, pvt_v1_to_mmdet

__all__ = ["StrictLoadPVT", "load_for_mmdet", "pvt_v1_to_mmdet"]
