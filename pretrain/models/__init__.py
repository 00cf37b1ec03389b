"""Models of the suite. Importing this package registers PVT v1 (pvt_tiny/small/medium/large) in
timm's registry and its class-token attention with mixpro.ClsAttention."""
from .pvt import PyramidVisionTransformer

__all__ = ["PyramidVisionTransformer"]
