"""Class-token attention of the last block, recorded without turning fused attention off.

Fused scaled-dot-product attention never materialises the attention matrix. TransMix's official code
switches the last block to explicit attention to read it; we instead keep the model's forward
untouched and recompute only the class-token row from the q and k that the block computes anyway
(a forward hook on its qkv projection): O(N) extra work instead of O(N^2) memory.

Model families plug in through :func:`register_attention_adapter`; timm's families are registered in
:mod:`mixpro.adapters`, PVT v1 by ``pretrain.models``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import torch
from torch import nn

__all__ = ["AttentionOutput", "AttentionSite", "ClsAttention", "adapter_families", "attention_site", "cls_attention_row",
           "register_attention_adapter"]


@dataclass
class AttentionSite:
    """Where and how to read a model's class-token attention.

    module: the module whose forward the hook observes.
    compute: ``compute(inputs, output) -> (B, H, N)``, from that module's positional inputs and
        output: the cls->patch attention of each head (after softmax, cls and other prefix columns
        dropped), in float32.
    grid_size: (h, w) token grid of that block, for token masks.
    patch_size: pixels per token side at that block; MaskMix cells must be a multiple of it.
    attention: the block's attention module itself (benchmarks switch its ``fused_attn`` off to
        reproduce the explicit attention of the official TransMix code).
    """

    module: nn.Module
    compute: Callable[[tuple, torch.Tensor], torch.Tensor]
    grid_size: Tuple[int, int]
    patch_size: int
    attention: nn.Module


_ADAPTERS: List[Tuple[str, Callable[[nn.Module], bool], Callable[[nn.Module], AttentionSite]]] = []


def register_attention_adapter(matches: Callable[[nn.Module], bool],
                               build: Callable[[nn.Module], AttentionSite], family: str = "") -> None:
    """Teach :class:`ClsAttention` a model family: ``matches(model)`` selects it, ``build(model)``
    returns its :class:`AttentionSite`; ``family`` names it in errors. Later registrations take
    precedence."""
    _ADAPTERS.insert(0, (family or build.__name__, matches, build))


def adapter_families() -> List[str]:
    """The model families that have an adapter, in registration order."""
    return [family for family, _, _ in reversed(_ADAPTERS)]


def find_attention_site(model: nn.Module) -> Optional[AttentionSite]:
    """The :class:`AttentionSite` of ``model`` (unwrapping DDP and torch.compile wrappers), or None when
    no registered adapter matches it."""
    model = unwrap_model(model)
    for _, matches, build in _ADAPTERS:
        if matches(model):
            return build(model)
    return None


def attention_site(model: nn.Module) -> AttentionSite:
    """The :class:`AttentionSite` of ``model``; a TypeError naming the supported families when none matches."""
    site = find_attention_site(model)
    if site is None:
        raise TypeError(
            f"no class-token attention adapter for {type(unwrap_model(model)).__name__}; families with one: "
            f"{', '.join(adapter_families())}; or register one with mixpro.register_attention_adapter"
        )
    return site


def unwrap_model(model: nn.Module) -> nn.Module:
    # Not timm.utils.unwrap_model: this library does not import timm unless an adapter needs it.
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        else:
            return model


def cls_attention_row(q_cls: torch.Tensor, k: torch.Tensor, scale: float, num_prefix_tokens: int) -> torch.Tensor:
    """softmax(q_cls k^T * scale) with the prefix columns dropped, per head, in float32.

    q_cls: (B, H, D) class-token queries; k: (B, T, H, D) keys of all T tokens. Returns (B, H, T - prefix).
    """
    logits = torch.einsum("bhd,bthd->bht", q_cls.float() * scale, k.float())  # float32 even under autocast
    return logits.softmax(dim=-1)[..., num_prefix_tokens:]


class ClsAttention:
    """Records the class-token attention of a model's last block on every forward.

    >>> with ClsAttention(model) as probe:
    ...     logits = model(images)
    ...     attn = probe.last          # (B, N) float32, N patch tokens of the last block

    The model keeps its fused attention. ``probe.last`` keeps the autograd graph (as the official
    TransMix/MixPro code, whose labels are not detached from the attention); pass ``detach=True`` to
    record constants. Heads are averaged (the paper's definition); ``head=i`` keeps head i alone
    (DINO saliency uses head 1). ``remove()`` (or leaving the ``with`` block) detaches the hook.
    """

    def __init__(self, model: nn.Module, detach: bool = False, head: Optional[int] = None) -> None:
        self.site = attention_site(model)
        self.detach = detach
        self.head = head
        self.last: Optional[torch.Tensor] = None
        self._handle = self.site.module.register_forward_hook(self._record)

    @property
    def grid_size(self) -> Tuple[int, int]:
        return self.site.grid_size

    @property
    def patch_size(self) -> int:
        return self.site.patch_size

    def _record(self, module: nn.Module, inputs, output: torch.Tensor) -> None:
        per_head = self.site.compute(inputs, output)
        attn = per_head.mean(dim=1) if self.head is None else per_head[:, self.head]
        self.last = attn.detach() if self.detach else attn

    def pop(self) -> torch.Tensor:
        """The last recorded attention, cleared so a stale one is never reused."""
        if self.last is None:
            raise RuntimeError("no attention recorded: run a forward pass of the model first")
        attn, self.last = self.last, None
        return attn

    def remove(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self.last = None

    def __enter__(self) -> "ClsAttention":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


class AttentionOutput(nn.Module):
    """``model`` whose forward returns ``(logits, attention)``.

    Reading ``probe.last`` after a compiled forward relies on torch.compile replaying the hook's side
    effect, which not every torch version does; inside this forward the attention is read in the
    same traced frame and becomes an output of the graph. ``probe`` defaults to ``ClsAttention(model)``.
    """

    def __init__(self, model: nn.Module, probe: Optional["ClsAttention"] = None) -> None:
        super().__init__()
        self.model = model
        self.probe = probe if probe is not None else ClsAttention(model)

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(images)
        return logits, self.probe.pop()
