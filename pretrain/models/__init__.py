"""Models of the suite. Importing this package registers PVT v1 (pvt_tiny/small/medium/large) and
CA-Swin (ca_swin_tiny/small) in timm's registry and their class-token attention with
mixpro.ClsAttention."""
from .ca_swin import ClassAttentionSwin
from .pvt import PyramidVisionTransformer

__all__ = ["ClassAttentionSwin", "PyramidVisionTransformer"]
