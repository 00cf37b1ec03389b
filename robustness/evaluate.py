"""Robustness evaluation of one model: val top-1 with the occlusion sweep (ImageNet val), accuracy /
calibration error / AURRA on a shifted set (ImageNet-A), AUPR against an OOD set (ImageNet-O).

Each benchmark is one pass over its data: a decoded batch is occluded at every level and mode on
the device. Under torchrun every process takes a shard (no padding) and the per-image results are
gathered, so the numbers are those of a single process. bf16 autocast on GPUs.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from mixpro import ClsAttention, find_attention_site
from pretrain.inference import LoadedModel
from pretrain.data import create_loader
from pretrain.distributed import all_gather_objects, all_reduce_sum

from . import metrics
from .data import EvalSet
from .occlusion import RANDOM_LEVELS, SALIENCY_LEVELS, occlusion_variants

_logger = logging.getLogger(__name__)


def _loader(evalset: EvalSet, settings: "Settings", device: torch.device):
    """This process's shard of ``evalset`` on the data pipeline of ``settings``."""
    return create_loader(evalset.dataset, settings.data_pipeline, device, settings.batch_size, settings.workers,
                         rank=settings.rank, world_size=settings.world_size)


def _gather(arrays: Dict[str, List[float]]) -> Dict[str, np.ndarray]:
    shards = all_gather_objects(arrays)
    return {key: np.concatenate([np.asarray(shard[key], dtype=np.float64) for shard in shards]) for key in arrays}


@dataclass
class Settings:
    batch_size: int = 64
    workers: int = 4
    amp: bool = True
    seed: int = 0
    repeats: int = 1
    per_image: bool = False
    random_patch_size: int = 16
    random_levels: Sequence[int] = RANDOM_LEVELS
    saliency_levels: Sequence[float] = SALIENCY_LEVELS
    rank: int = 0
    world_size: int = 1
    show_progress: bool = True
    data_pipeline: str = "cpu"


def occlusion_patch_size(model: torch.nn.Module) -> int:
    """Side in pixels of the cells a model's class attention covers (16 for DeiT / ViT-B/16 and DINO
    ViT-S/16, the stage-4 stride for PVT); 16 for models without an attention adapter."""
    site = find_attention_site(model)
    return site.patch_size if site is not None else 16


def evaluate_val(model: LoadedModel, evalset: EvalSet, settings: Settings,
                 saliency_model: Optional[LoadedModel] = None) -> Dict:
    """Clean top-1 and every occlusion level from one pass. Saliency: ``saliency_model`` (DINO,
    head 1, fed with the evaluated model's normalisation) or the model's own class attention.
    Random dropping uses ``settings.random_patch_size`` px patches (16: the reference's 196 at 224 px),
    salient / non-salient dropping the saliency map's cells (DINO's 16 px, or the model's own grid)."""
    device = model.mean.device
    if saliency_model is not None:
        probe, source = ClsAttention(saliency_model.model, detach=True, head=1), "dino"
        patch_size = occlusion_patch_size(saliency_model.model)
    else:
        own = find_attention_site(model.model) is not None
        probe, source = (ClsAttention(model.model, detach=True), "own_attention") if own else (None, None)
        patch_size = occlusion_patch_size(model.model)
    generator = torch.Generator(device=device).manual_seed(settings.seed + settings.rank)
    counts: Dict[str, torch.Tensor] = {}
    total = 0
    loader = _loader(evalset, settings, device)
    with torch.no_grad():
        for images, labels, _ in tqdm(loader, desc=f"{model.name} {evalset.title or evalset.name}", disable=not settings.show_progress):
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            clean = model.logits(images, settings.amp)
            saliency = None
            if probe is not None:
                if saliency_model is not None:
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=settings.amp):
                        saliency_model.model((images - model.mean) / model.std)
                saliency = probe.pop()
            _count(counts, "clean", (clean.argmax(1) == labels).sum())
            variants = occlusion_variants(images, saliency, settings.random_patch_size, generator=generator,
                                          per_image=settings.per_image, repeats=settings.repeats,
                                          random_levels=settings.random_levels,
                                          saliency_levels=settings.saliency_levels, saliency_patch_size=patch_size)
            for mode, level, repeat, occluded in variants:
                logits = clean if (mode == "random" and level == 0.0) else model.logits(occluded, settings.amp)
                _count(counts, f"{mode}|{level}|{repeat}", (logits.argmax(1) == labels).sum())
            total += labels.shape[0]
    if probe is not None:
        probe.remove()
    keys = sorted(counts)
    summed = all_reduce_sum(torch.stack([counts[key] for key in keys]).double())
    images_seen = int(all_reduce_sum(torch.tensor(float(total), device=device, dtype=torch.float64)).item())
    accuracy = {key: 100.0 * value / images_seen for key, value in zip(keys, summed.tolist())}
    occlusion: Dict[str, Dict[str, float]] = {}
    for key, value in accuracy.items():
        if key == "clean":
            continue
        mode, level, _ = key.split("|")
        occlusion.setdefault(mode, {}).setdefault(level, []).append(value)
    occlusion = {mode: {level: float(np.mean(values)) for level, values in levels.items()}
                 for mode, levels in occlusion.items()}
    return {"top1": accuracy["clean"], "images": images_seen, "occlusion": occlusion, "saliency": source,
            "patch_size": patch_size, "random_patch_size": settings.random_patch_size}


def _count(counts: Dict[str, torch.Tensor], key: str, value: torch.Tensor) -> None:
    counts[key] = counts[key] + value if key in counts else value


def predictions(model: LoadedModel, evalset: EvalSet, settings: Settings) -> Dict[str, np.ndarray]:
    """Per image, over the set's label space: max softmax probability, prediction and label."""
    device = model.mean.device
    columns = torch.tensor(evalset.logit_indices, device=device) if evalset.logit_indices else None
    parts: Dict[str, List[torch.Tensor]] = {"confidence": [], "prediction": [], "label": []}
    loader = _loader(evalset, settings, device)
    with torch.no_grad():
        for images, labels, _ in tqdm(loader, desc=f"{model.name} {evalset.title or evalset.name}", disable=not settings.show_progress):
            logits = model.logits(images.to(device, non_blocking=True), settings.amp)
            if columns is not None:
                logits = logits[:, columns]  # slice to the set's classes before softmax / argmax
            confidence, prediction = logits.softmax(1).max(1)
            parts["confidence"].append(confidence)
            parts["prediction"].append(prediction)
            parts["label"].append(labels)
    # One read back per set, not one per batch.
    return _gather({key: torch.cat(values).tolist() if values else [] for key, values in parts.items()})


def evaluate_shifted(model: LoadedModel, evalset: EvalSet, settings: Settings) -> Dict:
    result = predictions(model, evalset, settings)
    correct = (result["prediction"] == result["label"]).astype(np.float64)
    return {"top1": metrics.top1(result["prediction"], result["label"]),
            "calibration_error": metrics.calibration_error(result["confidence"], correct),
            "aurra": metrics.aurra(result["confidence"], correct), "images": int(correct.size),
            "confidence": result["confidence"].tolist(), "correct": correct.tolist()}


def evaluate_ood(model: LoadedModel, ood: EvalSet, in_distribution: EvalSet, settings: Settings) -> Dict:
    """Score = negative max softmax over the in-distribution label space (ImageNet-O: its 200
    classes); OOD is the positive class."""
    inside = predictions(model, in_distribution, settings)["confidence"]
    outside = predictions(model, ood, settings)["confidence"]
    score = -np.concatenate([inside, outside])
    is_ood = np.concatenate([np.zeros(inside.size), np.ones(outside.size)])
    return {**metrics.ood_scores(score, is_ood), "in_distribution_images": int(inside.size),
            "ood_images": int(outside.size)}
