"""Batch mixing policies with one interface: MixPro, TransMix and plain Mixup/CutMix.

    mixer = MixPro(num_classes=1000)
    batch = mixer(images, labels)                 # MixedBatch
    with ClsAttention(model) as probe:
        logits = model(batch.images)
        targets = mixer.targets(batch, logits, probe.pop())

Per-batch decisions (which mix, its lambda, the CutMix box) are drawn on the host from the mixer's own
``random.Random``; per-sample draws (partners, MaskMix cells) are drawn on the images' device, from
``generator`` when one is given. Nothing reads a device tensor back to the host.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch

from .label import attention_lambda, mix_targets, pal_lambda, progressive_factor, transmix_lambda
from .mask import (MASK_STRATEGIES, MaskMixGenerator, box_mask, check_mask_patch_size, cutmix_box, shuffle_tokens,
                   snap_box, token_mask)

__all__ = ["MixedBatch", "BatchMixer", "MixPro", "TransMix", "MixupCutMix", "NoMix", "build_mixer", "MIXERS"]

KINDS = ("maskmix", "cutmix", "mixup", "none")
LABEL_MODES = ("area", "transmix", "pal")
PARTNERS = ("flip", "perm", "perm_maskmix")
ALPHA_RULES = ("pal", "constant", "linear", "parabolic", "learnable")
SHUFFLES = ("none", "pasted", "canvas", "both")


@dataclass
class MixedBatch:
    """A mixed batch: ``images = where(mask, x_a, x_b)`` (Mixup: lam_area * x_a + (1 - lam_area) * x_b).

    lam_area: (B,) fraction of x_a. token_mask: (B, N) fraction of x_a per token on the attention
    block's grid, or None for Mixup / unmixed batches. mask: (B, 1, H, W) bool, True on x_a pixels
    (CutMix, MaskMix). After ``mixer.targets`` the label weights used
    are filled in: ``lam`` (B,), and on attention-labelled batches ``lam_attn`` and (PAL) ``alpha``.
    """

    images: torch.Tensor
    y_a: torch.Tensor
    y_b: torch.Tensor
    lam_area: torch.Tensor
    token_mask: Optional[torch.Tensor]
    kind: str
    mask: Optional[torch.Tensor] = None
    lam: Optional[torch.Tensor] = None
    lam_attn: Optional[torch.Tensor] = None
    alpha: Optional[torch.Tensor] = None


def _check_probability(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
    return float(value)


def _check_alpha(name: str, value: float) -> float:
    if value < 0:
        raise ValueError(f"{name} must be >= 0 (0 disables it), got {value}")
    return float(value)


class BatchMixer:
    """The general policy; :class:`MixPro`, :class:`TransMix` and :class:`MixupCutMix` preset it.

    Per batch: with probability ``mix_prob`` the batch is mixed; then MaskMix with probability
    ``maskmix_prob``, otherwise Mixup or CutMix as timm's ``Mixup`` in 'batch' mode (CutMix with
    ``switch_prob`` when both are enabled; the CutMix lambda is corrected to the clipped box area).
    The trainer calls :meth:`set_progress` every epoch for the 'linear' and 'parabolic' alpha rules, and
    for 'learnable' moves the mixer with :meth:`to` and optimises :meth:`learnable_parameters` with the model.

    Args:
        num_classes: number of classes of the targets.
        patch_size: pixels per token at the block whose attention labels the batch (16 for DeiT/16,
            32 for PVT's stage 4). Token masks are built on the (H / patch_size, W / patch_size) grid.
        mask_patch_size: MaskMix cell size in pixels, a multiple of ``patch_size``.
        maskmix_beta, per_sample_ratio: see :class:`~mixpro.mask.MaskMixGenerator`.
        maskmix_label, cutmix_label: label weight on MaskMix / CutMix batches: 'area' (lam_area),
            'transmix' ((lam_area + lam_attn) / 2) or 'pal' (alpha * lam_attn + (1 - alpha) * lam_area).
            Mixup batches always use the area lambda.
        partner: 'flip' pairs sample i with B-1-i (timm, paper Alg. 1); 'perm' with a random
            permutation; 'perm_maskmix' permutes on MaskMix batches and flips on Mixup/CutMix batches
            (official MixPro code).
        detach_alpha: stop the gradient through the PAL progressive factor (alpha_rule 'pal'). Default False:
            the official MixPro code lets it flow, and the paper's numbers were produced that way.
        mask_strategy: MaskMix cells set: 'random' (MaskMix) or 'block' (BEiT blockwise rectangles; Table 7).
        mask_grid_offset: shift in pixels of the MaskMix cell borders off the patch grid (Table 8 B: patch_size/2).
        subpatch_cells: allow MaskMix cells smaller than a patch, a divisor of patch_size (Table 8 C).
        maskmix_shuffle: on MaskMix batches, permute the tokens of x_b ('pasted'), of x_a ('canvas') or
            'both' among their own positions (Table 9); 'none' by default.
        cutmix_snap: round the CutMix box edges to multiples of patch_size (Table 8 A).
        alpha_rule: PAL's alpha: 'pal' (cosine of prediction and area target), 'constant' (0.5), 'linear'
            (T / T_max), 'parabolic' ((T / T_max)^2), 'learnable' (sigmoid of a trained scalar); Table 10.
        smooth_pal_targets: smooth the targets of PAL-labelled batches by ``label_smoothing``; False gives
            them plain one-hot mixtures (official code), the area target of the cosine included.
        seed: seed of the host RNG for per-batch decisions; None derives it from torch.initial_seed(),
            so seeding torch (per rank) seeds the mixer.
        generator: optional torch.Generator for the per-sample draws, on the images' device.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        patch_size: int = 16,
        mixup_alpha: float = 0.8,
        cutmix_alpha: float = 1.0,
        cutmix_minmax: Optional[Tuple[float, float]] = None,
        switch_prob: float = 0.5,
        mix_prob: float = 1.0,
        maskmix_prob: float = 0.0,
        mask_patch_size: int = 64,
        maskmix_beta: float = 1.0,
        per_sample_ratio: bool = False,
        label_smoothing: float = 0.1,
        maskmix_label: str = "pal",
        cutmix_label: str = "area",
        partner: str = "flip",
        detach_alpha: bool = False,
        mask_strategy: str = "random",
        mask_grid_offset: int = 0,
        subpatch_cells: bool = False,
        maskmix_shuffle: str = "none",
        cutmix_snap: bool = False,
        alpha_rule: str = "pal",
        smooth_pal_targets: bool = True,
        seed: Optional[int] = None,
        generator: Optional[torch.Generator] = None,
    ) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        check_mask_patch_size(mask_patch_size, patch_size, subpatch_cells=subpatch_cells)
        if mask_strategy not in MASK_STRATEGIES:
            raise ValueError(f"mask_strategy must be one of {MASK_STRATEGIES}, got {mask_strategy!r}")
        if not 0 <= mask_grid_offset < mask_patch_size:
            raise ValueError(f"mask_grid_offset={mask_grid_offset} must be in [0, mask_patch_size={mask_patch_size}) "
                             f"pixels")
        if maskmix_shuffle not in SHUFFLES:
            raise ValueError(f"maskmix_shuffle must be one of {SHUFFLES}, got {maskmix_shuffle!r}")
        if maskmix_shuffle != "none" and (subpatch_cells or mask_grid_offset % patch_size):
            raise ValueError(f"maskmix_shuffle={maskmix_shuffle!r} moves whole tokens, each of one image: it needs "
                             f"cells aligned with the patches (no subpatch_cells, mask_grid_offset a multiple of "
                             f"patch_size={patch_size}, got {mask_grid_offset})")
        if alpha_rule not in ALPHA_RULES:
            raise ValueError(f"alpha_rule must be one of {ALPHA_RULES}, got {alpha_rule!r}")
        if alpha_rule == "learnable" and detach_alpha:
            raise ValueError("alpha_rule='learnable' with detach_alpha=True: the learnable alpha would get no "
                             "gradient; use detach_alpha=False")
        if maskmix_label not in LABEL_MODES:
            raise ValueError(f"maskmix_label must be one of {LABEL_MODES}, got {maskmix_label!r}")
        if cutmix_label not in LABEL_MODES:
            raise ValueError(f"cutmix_label must be one of {LABEL_MODES}, got {cutmix_label!r}")
        if partner not in PARTNERS:
            raise ValueError(f"partner must be one of {PARTNERS}, got {partner!r}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if cutmix_minmax is not None:
            low, high = cutmix_minmax
            if not 0.0 < low <= high <= 1.0:
                raise ValueError(f"cutmix_minmax must be (low, high) with 0 < low <= high <= 1, got {cutmix_minmax}")
            cutmix_minmax = (float(low), float(high))
        if not maskmix_beta > 0:
            raise ValueError(f"maskmix_beta must be > 0, got {maskmix_beta}")
        self.num_classes = int(num_classes)
        self.patch_size = int(patch_size)
        self.mixup_alpha = _check_alpha("mixup_alpha", mixup_alpha)
        self.cutmix_alpha = _check_alpha("cutmix_alpha", cutmix_alpha)
        self.cutmix_minmax = cutmix_minmax
        self.switch_prob = _check_probability("switch_prob", switch_prob)
        self.mix_prob = _check_probability("mix_prob", mix_prob)
        self.maskmix_prob = _check_probability("maskmix_prob", maskmix_prob)
        self.mask_patch_size = int(mask_patch_size)
        self.maskmix_beta = float(maskmix_beta)
        self.per_sample_ratio = bool(per_sample_ratio)
        self.label_smoothing = float(label_smoothing)
        self.maskmix_label = maskmix_label
        self.cutmix_label = cutmix_label
        self.partner = partner
        self.detach_alpha = bool(detach_alpha)
        self.mask_strategy = mask_strategy
        self.mask_grid_offset = int(mask_grid_offset)
        self.subpatch_cells = bool(subpatch_cells)
        self.maskmix_shuffle = maskmix_shuffle
        self.cutmix_snap = bool(cutmix_snap)
        self.alpha_rule = alpha_rule
        self.smooth_pal_targets = bool(smooth_pal_targets)
        # sigmoid(0) = 0.5: the learnable alpha starts as the constant rule.
        self.alpha_logit = torch.nn.Parameter(torch.zeros(())) if alpha_rule == "learnable" else None
        self._progress: Optional[float] = None
        self.generator = generator
        self.rng = random.Random(torch.initial_seed() if seed is None else seed)
        self._maskmix: Dict[Tuple[int, int], MaskMixGenerator] = {}

    # -- policy -------------------------------------------------------------------------------------
    @property
    def uses_attention(self) -> bool:
        """Whether some batches need the class-token attention for their labels."""
        maskmix = self.maskmix_prob > 0 and self.maskmix_label != "area"
        cutmix = self.cutmix_alpha > 0 and self.maskmix_prob < 1 and self.cutmix_label != "area"
        return self.mix_prob > 0 and (maskmix or cutmix)

    def label_mode(self, kind: str) -> str:
        return {"maskmix": self.maskmix_label, "cutmix": self.cutmix_label}.get(kind, "area")

    def _draw_kind(self) -> str:
        if self.mix_prob < 1.0 and self.rng.random() >= self.mix_prob:
            return "none"
        if self.maskmix_prob > 0 and (self.maskmix_prob >= 1.0 or self.rng.random() < self.maskmix_prob):
            return "maskmix"
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            return "cutmix" if self.rng.random() < self.switch_prob else "mixup"
        if self.cutmix_alpha > 0:
            return "cutmix"
        if self.mixup_alpha > 0:
            return "mixup"
        return "none"

    def _maskmix_generator(self, image_size: Tuple[int, int]) -> MaskMixGenerator:
        if image_size not in self._maskmix:
            self._maskmix[image_size] = MaskMixGenerator(
                image_size, self.mask_patch_size, self.patch_size, self.maskmix_beta, self.per_sample_ratio,
                strategy=self.mask_strategy, grid_offset=self.mask_grid_offset, subpatch_cells=self.subpatch_cells)
        return self._maskmix[image_size]

    def check_image_size(self, image_size: Tuple[int, int]) -> None:
        """Raise now, not at the first MaskMix batch, when images of ``image_size`` cannot be mixed
        (not whole tokens, or a MaskMix grid of fewer than 2 cells)."""
        self.token_grid(image_size)
        if self.maskmix_prob > 0:
            self._maskmix_generator(tuple(image_size))

    def token_grid(self, image_size: Tuple[int, int]) -> Tuple[int, int]:
        height, width = image_size
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"image size {height}x{width} is not a multiple of patch_size={self.patch_size}")
        return height // self.patch_size, width // self.patch_size

    def _partner_index(self, batch_size: int, device: torch.device, kind: str) -> torch.Tensor:
        if self.partner == "flip" or (self.partner == "perm_maskmix" and kind != "maskmix"):
            return torch.arange(batch_size - 1, -1, -1, device=device)
        return torch.randperm(batch_size, device=device, generator=self.generator)

    # -- mixing -------------------------------------------------------------------------------------
    def __call__(self, images: torch.Tensor, labels: torch.Tensor, kind: Optional[str] = None) -> MixedBatch:
        """Mix a batch. ``kind`` forces one kind (benchmarks, visualisation); by default it is drawn."""
        if images.dim() != 4:
            raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
        if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(f"labels must be (B,) class indices matching {images.shape[0]} images, "
                             f"got shape {tuple(labels.shape)}")
        if self.generator is not None and self.generator.device.type != images.device.type:
            raise ValueError(f"generator is on {self.generator.device} but images are on {images.device}")
        kind = self._draw_kind() if kind is None else kind
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        batch_size, device = images.shape[0], images.device
        image_size = (images.shape[2], images.shape[3])
        if kind == "none":
            return MixedBatch(images, labels, labels, torch.ones(batch_size, device=device), None, "none")

        partner = self._partner_index(batch_size, device, kind)
        partner_images, y_b = images[partner], labels[partner]
        if kind == "mixup":
            lam = self.rng.betavariate(self.mixup_alpha, self.mixup_alpha)
            mixed = images * lam + partner_images * (1.0 - lam)
            lam_area = torch.full((batch_size,), lam, device=device)
            return MixedBatch(mixed, labels, y_b, lam_area, None, "mixup")

        if kind == "cutmix":
            lam = self.rng.betavariate(self.cutmix_alpha, self.cutmix_alpha) if self.cutmix_alpha > 0 else 1.0
            box, lam = cutmix_box(image_size, lam, self.rng, self.cutmix_minmax)
            if self.cutmix_snap:
                box, lam = snap_box(image_size, box, self.patch_size)
            mask = box_mask(image_size, box, batch_size, device)
            lam_area = torch.full((batch_size,), lam, device=device)
            tokens = token_mask(mask[:1], self.token_grid(image_size)).expand(batch_size, -1)
        else:
            token_grid = self.token_grid(image_size)
            grid = self._maskmix_generator(image_size)(batch_size, device, self.generator)
            mask, lam_area = grid.pixel, grid.lam_area
            tokens = grid.tokens(token_grid)
        mixed = torch.where(mask, images, partner_images)
        if kind == "maskmix" and self.maskmix_shuffle != "none":
            mixed = shuffle_tokens(mixed, tokens, self.patch_size, pasted=self.maskmix_shuffle in ("pasted", "both"),
                                   canvas=self.maskmix_shuffle in ("canvas", "both"), generator=self.generator)
        return MixedBatch(mixed, labels, y_b, lam_area, tokens, kind, mask=mask)

    # -- labels -------------------------------------------------------------------------------------
    def targets(self, batch: MixedBatch, logits: torch.Tensor, attn: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, C) soft targets of a mixed batch; ``attn`` is the (B, N) class-token attention."""
        mode = self.label_mode(batch.kind)
        smoothing = self.label_smoothing if mode != "pal" or self.smooth_pal_targets else 0.0
        area = mix_targets(batch.y_a, batch.y_b, batch.lam_area, self.num_classes, smoothing)
        if mode == "area":
            batch.lam = batch.lam_area
            return area
        if attn is None:
            raise ValueError(f"{mode} labels of a {batch.kind} batch need the class-token attention: "
                             f"pass attn=ClsAttention(model).pop() after the forward pass")
        lam_attn = attention_lambda(attn, batch.token_mask)
        if mode == "transmix":
            lam = transmix_lambda(lam_attn, batch.lam_area)
        else:
            batch.alpha = self._alpha(logits, area)
            lam = pal_lambda(batch.alpha, lam_attn, batch.lam_area)
        batch.lam, batch.lam_attn = lam, lam_attn
        return mix_targets(batch.y_a, batch.y_b, lam, self.num_classes, smoothing)

    def _alpha(self, logits: torch.Tensor, area: torch.Tensor) -> torch.Tensor:
        """PAL's progressive factor per sample, (B,), by ``alpha_rule``."""
        if self.alpha_rule == "pal":
            return progressive_factor(logits, area, detach=self.detach_alpha)
        batch_size = logits.shape[0]
        if self.alpha_rule == "learnable":
            if self.alpha_logit.device != logits.device:
                raise ValueError(f"the learnable alpha is on {self.alpha_logit.device}, the logits on {logits.device}: "
                                 f"call mixer.to(device) before building the optimizer")
            return torch.sigmoid(self.alpha_logit).expand(batch_size)
        if self.alpha_rule == "constant":
            value = 0.5
        elif self._progress is None:
            raise RuntimeError(f"alpha_rule={self.alpha_rule!r} needs the training progress: call "
                               f"mixer.set_progress(epoch, total_epochs) at the start of every epoch")
        else:
            value = self._progress if self.alpha_rule == "linear" else self._progress ** 2
        return torch.full((batch_size,), value, device=logits.device)

    # -- training progress and the learnable alpha ---------------------------------------------------
    def set_progress(self, epoch: float, total_epochs: int) -> None:
        """T / T_max of the 'linear' and 'parabolic' alpha rules = epoch / total_epochs. Call it at the start
        of every epoch, resumed ones included, with the 0-based epoch about to be trained (a fractional epoch
        is fine): alpha is 0 in the first epoch and (T_max - 1) / T_max in the last."""
        if not total_epochs > 0 or not 0 <= epoch <= total_epochs:
            raise ValueError(f"set_progress needs total_epochs > 0 and 0 <= epoch <= total_epochs, "
                             f"got epoch={epoch}, total_epochs={total_epochs}")
        self._progress = epoch / total_epochs

    def learnable_parameters(self) -> List[torch.nn.Parameter]:
        """Parameters the trainer optimises with the model: the logit of alpha under alpha_rule='learnable'.
        They live outside the model, so under DDP the trainer averages their gradients across ranks itself."""
        return [] if self.alpha_logit is None else [self.alpha_logit]

    def learned_alpha(self) -> Optional[float]:
        """The learnable alpha as it stands, None under other rules (a host read: for logs, once an epoch)."""
        return None if self.alpha_logit is None else float(torch.sigmoid(self.alpha_logit.detach()))

    def to(self, device: torch.device | str) -> "BatchMixer":
        """Move the learnable alpha to ``device`` in place (the Parameter object stays the same); call it
        before the optimizer is built, so that its state is created on that device."""
        if self.alpha_logit is not None:
            self.alpha_logit.data = self.alpha_logit.data.to(device)
        return self

    # -- checkpointing ------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Host RNG state and the learnable alpha's logit, if any (plain numbers and lists: loadable with
        ``torch.load(weights_only=True)``)."""
        version, internal, gauss_next = self.rng.getstate()
        state = {"rng_version": version, "rng_state": list(internal), "rng_gauss_next": gauss_next}
        if self.alpha_logit is not None:  # a float32 value round-trips exactly through a Python float
            state["alpha_logit"] = float(self.alpha_logit.detach())
        return state

    def load_state_dict(self, state: dict) -> None:
        self.rng.setstate((state["rng_version"], tuple(state["rng_state"]), state["rng_gauss_next"]))
        if self.alpha_logit is not None:
            if "alpha_logit" not in state:
                raise ValueError("the mixer state has no learnable alpha: it was saved by a mixer whose alpha_rule "
                                 "was not 'learnable'")
            with torch.no_grad():
                self.alpha_logit.fill_(state["alpha_logit"])

    def __repr__(self) -> str:
        keys = ("num_classes", "patch_size", "mix_prob", "maskmix_prob", "mask_patch_size", "mixup_alpha",
                "cutmix_alpha", "switch_prob", "label_smoothing", "maskmix_label", "cutmix_label", "partner",
                "detach_alpha", "mask_strategy", "mask_grid_offset", "subpatch_cells", "maskmix_shuffle", "cutmix_snap",
                "alpha_rule", "smooth_pal_targets")
        return f"{type(self).__name__}(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in keys) + ")"


class MixPro(BatchMixer):
    """MaskMix + Progressive Attention Labeling, with the official code's batch policy.

    MaskMix (PAL labels) with probability ``maskmix_prob``, otherwise timm-style Mixup/CutMix with area
    labels, or TransMix labels on CutMix batches with ``transmix_on_cutmix=True``.
    """

    def __init__(self, num_classes: int, patch_size: int = 16, mask_patch_size: int = 64,
                 maskmix_prob: float = 0.5, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0,
                 switch_prob: float = 0.5, label_smoothing: float = 0.1, transmix_on_cutmix: bool = False,
                 partner: str = "perm", detach_alpha: bool = False, **kwargs) -> None:
        super().__init__(num_classes, patch_size=patch_size, mask_patch_size=mask_patch_size,
                         maskmix_prob=maskmix_prob, mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha,
                         switch_prob=switch_prob, label_smoothing=label_smoothing, maskmix_label="pal",
                         cutmix_label="transmix" if transmix_on_cutmix else "area", partner=partner,
                         detach_alpha=detach_alpha, **kwargs)


class TransMix(BatchMixer):
    """TransMix: timm Mixup/CutMix, CutMix batches labelled with (lam_area + lam_attn) / 2."""

    def __init__(self, num_classes: int, patch_size: int = 16, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0,
                 switch_prob: float = 0.5, label_smoothing: float = 0.1, partner: str = "flip", **kwargs) -> None:
        super().__init__(num_classes, patch_size=patch_size, mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha,
                         switch_prob=switch_prob, label_smoothing=label_smoothing, maskmix_prob=0.0,
                         cutmix_label="transmix", partner=partner, **kwargs)


class MixupCutMix(BatchMixer):
    """The DeiT baseline: timm-style Mixup/CutMix with area labels."""

    def __init__(self, num_classes: int, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0,
                 switch_prob: float = 0.5, label_smoothing: float = 0.1, partner: str = "flip", **kwargs) -> None:
        super().__init__(num_classes, mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, switch_prob=switch_prob,
                         label_smoothing=label_smoothing, maskmix_prob=0.0, cutmix_label="area", partner=partner,
                         **kwargs)


class NoMix(BatchMixer):
    """No mixing; targets are the smoothed one-hot labels."""

    def __init__(self, num_classes: int, label_smoothing: float = 0.1, **kwargs) -> None:
        super().__init__(num_classes, mixup_alpha=0.0, cutmix_alpha=0.0, maskmix_prob=0.0,
                         label_smoothing=label_smoothing, **kwargs)


MIXERS = {"none": NoMix, "mixup_cutmix": MixupCutMix, "transmix": TransMix, "mixpro": MixPro, "custom": BatchMixer}


def build_mixer(name: str, num_classes: int, **kwargs) -> BatchMixer:
    """Build a mixer by name: one of ``MIXERS`` ('custom' exposes every :class:`BatchMixer` option)."""
    if name not in MIXERS:
        raise ValueError(f"unknown mixer {name!r}; expected one of {sorted(MIXERS)}")
    return MIXERS[name](num_classes, **kwargs)
