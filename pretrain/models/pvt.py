"""Pyramid Vision Transformer v1 (Wang et al., ICCV 2021), registered in timm's model registry.

timm ships only PVT v2. This v1 keeps the original parameter names (``patch_embed1..4``,
``pos_embed1..4``, ``block1..4``, ``attn.q`` / ``attn.kv`` / ``attn.sr``, ``norm``, ``cls_token``,
``head``) because mmdet's ``pvt_convert`` expects them. The class token joins in stage 4, whose
7x7 grid (at 224 px, 32 px per token) is where MixPro reads attention.

    import pretrain.models, timm
    model = timm.create_model("pvt_small", drop_path_rate=0.1)
"""
from __future__ import annotations

from functools import partial
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, Mlp, trunc_normal_, use_fused_attn
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from mixpro.attention import AttentionSite, cls_attention_row, register_attention_adapter

__all__ = ["PyramidVisionTransformer"]


class SpatialReductionAttention(nn.Module):
    """Multi-head attention whose keys and values come from a grid reduced ``sr_ratio`` times."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, sr_ratio: int = 1, norm_layer=nn.LayerNorm) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.fused_attn = use_fused_attn()
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = norm_layer(dim)

    def keys_values(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(B, T, 2, heads, head_dim) keys and values of the (possibly reduced) tokens."""
        batch, tokens, dim = x.shape
        if self.sr_ratio > 1:
            grid = x.transpose(1, 2).reshape(batch, dim, height, width)
            x = self.norm(self.sr(grid).flatten(2).transpose(1, 2))
        return self.kv(x).reshape(batch, -1, 2, self.num_heads, self.head_dim)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch, tokens, dim = x.shape
        q = self.q(x).reshape(batch, tokens, self.num_heads, self.head_dim).transpose(1, 2)
        k, v = self.keys_values(x, height, width).permute(2, 0, 3, 1, 4).unbind(0)
        if self.fused_attn:
            x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            attn = self.attn_drop(attn.softmax(dim=-1))
            x = attn @ v
        x = x.transpose(1, 2).reshape(batch, tokens, dim)
        return self.proj_drop(self.proj(x))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, drop: float, attn_drop: float,
                 drop_path: float, sr_ratio: int, norm_layer=nn.LayerNorm) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = SpatialReductionAttention(dim, num_heads, qkv_bias, attn_drop, drop, sr_ratio, norm_layer)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=drop)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), height, width))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Non-overlapping patch embedding: strided conv, then LayerNorm over channels (eps 1e-6 like
    every norm here and in mmdet's PVT, so features transfer to the detector exactly)."""

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        height, width = x.shape[2:]
        return self.norm(x.flatten(2).transpose(1, 2)), height, width


class PyramidVisionTransformer(nn.Module):
    """PVT v1: four stages of spatial-reduction attention, class token in the last stage."""

    def __init__(
        self,
        img_size: int = 224,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dims: Sequence[int] = (64, 128, 320, 512),
        num_heads: Sequence[int] = (1, 2, 5, 8),
        mlp_ratios: Sequence[float] = (8, 8, 4, 4),
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        depths: Sequence[int] = (3, 4, 6, 3),
        sr_ratios: Sequence[int] = (8, 4, 2, 1),
        patch_sizes: Sequence[int] = (4, 2, 2, 2),
        global_pool: str = "token",
    ) -> None:
        super().__init__()
        if global_pool != "token":
            raise ValueError(f"PVT v1 classifies from its class token: global_pool must be 'token', got {global_pool!r}")
        if img_size % (patch_sizes[0] * patch_sizes[1] * patch_sizes[2] * patch_sizes[3]):
            raise ValueError(f"img_size={img_size} must be a multiple of the total stride {tuple(patch_sizes)}")
        self.num_classes = num_classes
        self.depths = tuple(depths)
        self.embed_dims = tuple(embed_dims)
        self.num_features = self.head_hidden_size = embed_dims[-1]
        self.num_prefix_tokens = 1
        self.global_pool = global_pool
        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        total = sum(depths)
        drop_path = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]  # linear decay rule

        size, channels, first = img_size, in_chans, 0
        for stage in range(4):
            embed = PatchEmbed(size, patch_sizes[stage], channels, embed_dims[stage])
            tokens = embed.num_patches + (1 if stage == 3 else 0)
            setattr(self, f"patch_embed{stage + 1}", embed)
            setattr(self, f"pos_embed{stage + 1}", nn.Parameter(torch.zeros(1, tokens, embed_dims[stage])))
            setattr(self, f"pos_drop{stage + 1}", nn.Dropout(drop_rate))
            setattr(self, f"block{stage + 1}", nn.ModuleList([
                Block(embed_dims[stage], num_heads[stage], mlp_ratios[stage], qkv_bias, drop_rate, attn_drop_rate,
                      drop_path[first + i], sr_ratios[stage], norm_layer)
                for i in range(depths[stage])
            ]))
            first += depths[stage]
            size, channels = size // patch_sizes[stage], embed_dims[stage]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims[3]))
        self.norm = norm_layer(embed_dims[3])
        self.head = nn.Linear(embed_dims[3], num_classes) if num_classes > 0 else nn.Identity()
        # Pixels per token of the class-token stage: MixPro's token masks live on that grid.
        self.cls_stride = img_size // self.patch_embed4.grid_size[0]

        for stage in range(4):
            trunc_normal_(getattr(self, f"pos_embed{stage + 1}"), std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    @torch.jit.ignore
    def no_weight_decay(self) -> set:
        return {"cls_token"} | {f"pos_embed{stage + 1}" for stage in range(4)}

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def _pos_embed(self, stage: int, height: int, width: int, with_cls: bool) -> torch.Tensor:
        pos = getattr(self, f"pos_embed{stage + 1}")
        grid = getattr(self, f"patch_embed{stage + 1}").grid_size
        cls_pos, pos = (pos[:, :1], pos[:, 1:]) if stage == 3 else (None, pos)  # stage 4 holds the cls slot
        if (height, width) != grid:
            pos = pos.reshape(1, grid[0], grid[1], -1).permute(0, 3, 1, 2)
            pos = F.interpolate(pos, size=(height, width), mode="bilinear").flatten(2).transpose(1, 2)
        return torch.cat([cls_pos, pos], dim=1) if with_cls else pos

    def _stage(self, stage: int, x: torch.Tensor, with_cls: bool) -> Tuple[torch.Tensor, int, int]:
        x, height, width = getattr(self, f"patch_embed{stage + 1}")(x)
        if with_cls:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = getattr(self, f"pos_drop{stage + 1}")(x + self._pos_embed(stage, height, width, with_cls))
        for block in getattr(self, f"block{stage + 1}"):
            x = block(x, height, width)
        return x, height, width

    @staticmethod
    def _to_map(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        return x.reshape(x.shape[0], height, width, -1).permute(0, 3, 1, 2).contiguous()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised stage-4 tokens, class token first: (B, 1 + N4, C4)."""
        for stage in range(3):
            x = self._to_map(*self._stage(stage, x, with_cls=False))
        x, _, _ = self._stage(3, x, with_cls=True)
        return self.norm(x)

    def forward_pyramid(self, x: torch.Tensor) -> List[torch.Tensor]:
        """The four stage outputs as (B, C_i, H_i, W_i) maps, stage 4 without the class token: the
        features a dense-prediction backbone computes (mmdet's PVT drops the class token)."""
        outs = []
        for stage in range(4):
            x = self._to_map(*self._stage(stage, x, with_cls=False))
            outs.append(x)
        return outs

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x[:, 0]
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _pvt_attention_site(model: PyramidVisionTransformer) -> AttentionSite:
    attn = model.block4[-1].attn
    if attn.sr_ratio != 1:
        raise TypeError("the class token's stage must attend to every token (sr_ratio 1) to read its attention")
    scale, heads, head_dim = attn.scale, attn.num_heads, attn.head_dim

    def compute(inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        x, height, width = inputs
        batch = x.shape[0]
        with torch.autocast(x.device.type, enabled=False):
            q_cls = attn.q(x[:, 0].float()).view(batch, heads, head_dim)
            k = attn.kv(x.float())[..., : heads * head_dim].reshape(batch, -1, heads, head_dim)
            return cls_attention_row(q_cls, k, scale, num_prefix_tokens=1)

    return AttentionSite(module=attn, compute=compute, grid_size=model.patch_embed4.grid_size,
                         patch_size=model.cls_stride, attention=attn)


register_attention_adapter(lambda model: isinstance(model, PyramidVisionTransformer), _pvt_attention_site,
                           "PVT v1 (pretrain.models)")


def _cfg(**kwargs) -> dict:
    return {
        "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": None, "crop_pct": 0.9,
        "interpolation": "bicubic", "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD,
        "first_conv": "patch_embed1.proj", "classifier": "head", "license": "apache-2.0", **kwargs,
    }


default_cfgs = generate_default_cfgs({name: _cfg() for name in ("pvt_tiny", "pvt_small", "pvt_medium", "pvt_large")})

_DEPTHS = {"pvt_tiny": (2, 2, 2, 2), "pvt_small": (3, 4, 6, 3), "pvt_medium": (3, 4, 18, 3),
           "pvt_large": (3, 8, 27, 3)}


def _create(variant: str, pretrained: bool, **kwargs) -> PyramidVisionTransformer:
    if pretrained:
        raise ValueError(f"{variant}: no hub weights here; load a local checkpoint with pretrain's "
                         f"checkpoint tools instead of pretrained=True")
    kwargs.setdefault("depths", _DEPTHS[variant])
    return build_model_with_cfg(PyramidVisionTransformer, variant, pretrained=False, **kwargs)


@register_model
def pvt_tiny(pretrained: bool = False, **kwargs) -> PyramidVisionTransformer:
    """PVT-Tiny, 13.2M parameters."""
    return _create("pvt_tiny", pretrained, **kwargs)


@register_model
def pvt_small(pretrained: bool = False, **kwargs) -> PyramidVisionTransformer:
    """PVT-Small, 24.5M parameters."""
    return _create("pvt_small", pretrained, **kwargs)


@register_model
def pvt_medium(pretrained: bool = False, **kwargs) -> PyramidVisionTransformer:
    """PVT-Medium, 44.2M parameters."""
    return _create("pvt_medium", pretrained, **kwargs)


@register_model
def pvt_large(pretrained: bool = False, **kwargs) -> PyramidVisionTransformer:
    """PVT-Large, 61.4M parameters."""
    return _create("pvt_large", pretrained, **kwargs)
