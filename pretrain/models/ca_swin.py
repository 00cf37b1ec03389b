"""CA-Swin: Swin with a class-attention last block, the Swin rows of the MixPro paper's Table 1
(``ca_swin_tiny``, ``ca_swin_small`` in timm's registry).

Swin has no class token, so it has no class-token attention to label with. The MixPro paper (Sec. 4.1,
after TransMix) uses "CA-Swin", which "replaces the last Swin block with a classification attention
(CA) block without parameter overhead". TransMix's own description (its Sec. 4.5) could not be read
here, so the block is built as CaiT defines class attention, from the replaced block's own weights:

    z = [cls, tokens of the last stage];  q = qkv(norm1(cls)), k, v = qkv(norm1(z))
    cls <- cls + proj(softmax(q k^T / sqrt(d)) v);  cls <- cls + mlp(norm2(cls))

and the head reads the normalised class token instead of the average-pooled tokens. The class token
(one vector, trunc-normal 0.02 as in DeiT / CaiT) is the only new parameter: 28.3M / 49.6M parameters
for T / S, the table's numbers; the tokens' last MLP and window attention are no longer computed,
which takes T from 4.5 to 4.2 GFLOPs and S from 8.8 to 8.5, the table's numbers too. Assumed where
the paper is silent: the class query gets no relative position bias (it has no position), and the
last stage's other blocks are Swin's own. The attention MixPro reads is the CA block's class row over
the last stage's tokens (7x7 of 32 px at 224 px), mean over heads.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.swin_transformer import SwinTransformer
from torch import nn

from mixpro.adapters import qkv_site
from mixpro.attention import AttentionSite, register_attention_adapter

__all__ = ["ClassAttentionSwin"]


class ClassAttentionSwin(SwinTransformer):
    """timm's SwinTransformer whose last block is applied as class attention (see the module)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        last_stage = self.layers[-1]
        self.class_block = last_stage.blocks[-1]
        last_stage.blocks = last_stage.blocks[:-1]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, self.num_features))
        trunc_normal_(self.cls_token, std=0.02)

    @torch.jit.ignore
    def no_weight_decay(self):
        return super().no_weight_decay() | {"cls_token"}

    def class_attention(self, tokens: torch.Tensor) -> torch.Tensor:
        """The class token after the CA block over ``tokens`` (B, N, C); fused attention."""
        block, attn = self.class_block, self.class_block.attn
        batch, count, channels = tokens.shape
        cls = self.cls_token.expand(batch, -1, -1)
        qkv = attn.qkv(block.norm1(torch.cat([cls, tokens], dim=1)))
        q, k, v = qkv.view(batch, count + 1, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        mixed = F.scaled_dot_product_attention(q[:, :, :1], k, v,
                                               dropout_p=attn.attn_drop.p if self.training else 0.0)
        cls = cls + block.drop_path1(attn.proj_drop(attn.proj(mixed.transpose(1, 2).reshape(batch, 1, -1))))
        return cls + block.drop_path2(block.mlp(block.norm2(cls)))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised [class token, last-stage tokens]: (B, 1 + N, C)."""
        x = self.layers(self.patch_embed(x))
        tokens = x.flatten(1, 2)  # (B, H, W, C) -> (B, N, C)
        return self.norm(torch.cat([self.class_attention(tokens), tokens], dim=1))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head.drop(x[:, 0])
        return x if pre_logits else self.head.fc(x)


def _ca_swin_site(model: ClassAttentionSwin) -> AttentionSite:
    stride = model.patch_embed.patch_size[0] * 2 ** (len(model.layers) - 1)
    grid = tuple(size // stride for size in model.patch_embed.img_size)
    attn = model.class_block.attn
    return qkv_site(attn.qkv, attn.num_heads, attn.scale, 1, grid, stride, attn)


register_attention_adapter(lambda model: isinstance(model, ClassAttentionSwin), _ca_swin_site,
                           "CA-Swin (pretrain.models)")


def _cfg(**kwargs) -> dict:
    return {"num_classes": 1000, "input_size": (3, 224, 224), "pool_size": None, "crop_pct": 0.9,
            "interpolation": "bicubic", "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD,
            "first_conv": "patch_embed.proj", "classifier": "head.fc", "license": "mit", **kwargs}


default_cfgs = generate_default_cfgs({"ca_swin_tiny": _cfg(), "ca_swin_small": _cfg()})

_SIZES = {"ca_swin_tiny": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
          "ca_swin_small": dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24))}


def _create(variant: str, pretrained: bool, **kwargs) -> ClassAttentionSwin:
    if pretrained:
        raise ValueError(f"{variant}: no hub weights here; train it or load a local checkpoint")
    return build_model_with_cfg(ClassAttentionSwin, variant, pretrained=False,
                                **{"window_size": 7, **_SIZES[variant], **kwargs})


@register_model
def ca_swin_tiny(pretrained: bool = False, **kwargs) -> ClassAttentionSwin:
    """CA-Swin-T, 28.3M parameters."""
    return _create("ca_swin_tiny", pretrained, **kwargs)


@register_model
def ca_swin_small(pretrained: bool = False, **kwargs) -> ClassAttentionSwin:
    """CA-Swin-S, 49.6M parameters."""
    return _create("ca_swin_small", pretrained, **kwargs)
