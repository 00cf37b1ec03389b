"""Robustness evaluation of one model: val top-1 with the occlusion sweep (ImageNet val), accuracy /
calibration error / AURRA on a shifted set (ImageNet-A), AUPR against an OOD set (ImageNet-O), top-1
on ImageNet-R / -Sketch / -V2, and the corruption errors of ImageNet-C.

Each benchmark is one pass over its data: a decoded batch is occluded at every level and mode on
the device, and ImageNet-C's 95 folders are one set read by one loader. Under torchrun every process
takes a shard (no padding) and the per-image results or counts are gathered, so the numbers are those
of a single process. bf16 autocast on GPUs; the benchmarks without occlusion can run a compiled model
(:func:`classifier`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from mixpro import ClsAttention, find_attention_site
from pretrain.inference import LoadedModel
from pretrain.data import create_loader
from pretrain.distributed import all_gather_objects, all_reduce_sum

from . import metrics
from .corruptions import corruption_summary
from .data import CorruptionSet, EvalSet
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
    calibration_protocol: str = "all-bins"  # metrics.CALIBRATION_PROTOCOLS
    all_class_argmax: bool = False  # ImageNet-A / -R: predict over all the model's classes, not the set's slice
    fpr_definition: str = "first-reaching"  # metrics.FPR_DEFINITIONS
    compile: bool = False


@dataclass
class Classifier:
    """What the benchmarks without occlusion need of a model: its name, its device, and its float
    logits of a batch of [0, 1] images."""

    name: str
    device: torch.device
    logits: Callable[[torch.Tensor], torch.Tensor]


def classifier(model: LoadedModel, settings: Settings) -> Classifier:
    """``model`` as a :class:`Classifier`, compiled with ``settings.compile``: then every batch is
    padded to the batch size, so that one graph serves each set's last, smaller batch too (no
    recompilation), and the compiled graph is kept for every set it is given."""
    if not settings.compile:
        return Classifier(model.name, model.mean.device, lambda images: model.logits(images, settings.amp))
    compiled = torch.compile(model.logits)

    def padded(images: torch.Tensor) -> torch.Tensor:
        count = images.shape[0]
        if count < settings.batch_size:
            images = torch.cat([images, images.new_zeros((settings.batch_size - count, *images.shape[1:]))])
        return compiled(images, settings.amp)[:count]

    return Classifier(model.name, model.mean.device, padded)


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


def predictions(model: Classifier, evalset: EvalSet, settings: Settings, all_classes: bool = False
                ) -> Dict[str, np.ndarray]:
    """Per image: max softmax probability, prediction and label, over the set's label space (its logit
    columns sliced out before softmax and argmax), or with ``all_classes`` over all the model's
    classes (the labels mapped to theirs: a prediction outside the set's classes is wrong)."""
    device = model.device
    columns = torch.tensor(evalset.logit_indices, device=device) if evalset.logit_indices else None
    parts: Dict[str, List[torch.Tensor]] = {"confidence": [], "prediction": [], "label": []}
    loader = _loader(evalset, settings, device)
    with torch.no_grad():
        for images, labels, _ in tqdm(loader, desc=f"{model.name} {evalset.title or evalset.name}", disable=not settings.show_progress):
            logits = model.logits(images.to(device, non_blocking=True))
            labels = labels.to(device, non_blocking=True)
            if columns is not None:
                if all_classes:
                    labels = columns[labels]
                else:
                    logits = logits[:, columns]
            confidence, prediction = logits.softmax(1).max(1)
            parts["confidence"].append(confidence)
            parts["prediction"].append(prediction)
            parts["label"].append(labels)
    # One read back per set, not one per batch.
    return _gather({key: torch.cat(values).tolist() if values else [] for key, values in parts.items()})


def evaluate_shifted(model: Classifier, evalset: EvalSet, settings: Settings) -> Dict:
    result = predictions(model, evalset, settings, settings.all_class_argmax)
    correct = (result["prediction"] == result["label"]).astype(np.float64)
    return {"top1": metrics.top1(result["prediction"], result["label"]),
            "calibration_error": metrics.calibration_error(result["confidence"], correct,
                                                           protocol=settings.calibration_protocol),
            "aurra": metrics.aurra(result["confidence"], correct), "images": int(correct.size),
            "confidence": result["confidence"].tolist(), "correct": correct.tolist()}


def evaluate_top1(model: Classifier, evalset: EvalSet, settings: Settings) -> Dict:
    """Top-1 on a set of the model's classes or of a subset of them (ImageNet-R: sliced, or over all
    classes with ``settings.all_class_argmax``)."""
    result = predictions(model, evalset, settings, settings.all_class_argmax)
    return {"top1": metrics.top1(result["prediction"], result["label"]), "images": int(result["label"].size)}


def evaluate_ood(model: Classifier, ood: EvalSet, in_distribution: EvalSet, settings: Settings) -> Dict:
    """Score = negative max softmax over the in-distribution label space (ImageNet-O: its 200
    classes); OOD is the positive class."""
    inside = predictions(model, in_distribution, settings)["confidence"]
    outside = predictions(model, ood, settings)["confidence"]
    score = -np.concatenate([inside, outside])
    is_ood = np.concatenate([np.zeros(inside.size), np.ones(outside.size)])
    return {**metrics.ood_scores(score, is_ood, settings.fpr_definition), "in_distribution_images": int(inside.size),
            "ood_images": int(outside.size)}


def evaluate_corruptions(model: Classifier, corrupted: CorruptionSet, settings: Settings,
                         clean_top1: Optional[float] = None) -> Dict:
    """Top-1 error in % of every (corruption, severity) folder from one pass over all of them, and
    the CEs, mCE and relative mCE (``clean_top1``: the model's clean ImageNet val top-1 in %, for the
    relative numbers) of :func:`robustness.corruptions.corruption_summary`."""
    device = model.device
    classes = len(corrupted.classes)
    hits = torch.zeros(len(corrupted.groups), dtype=torch.float64, device=device)
    seen = torch.zeros_like(hits)
    loader = _loader(corrupted, settings, device)
    with torch.no_grad():
        for images, labels, _ in tqdm(loader, desc=f"{model.name} {corrupted.title}", disable=not settings.show_progress):
            labels = labels.to(device, non_blocking=True)
            group = labels // classes
            correct = model.logits(images.to(device, non_blocking=True)).argmax(1) == labels % classes
            # index_add_ rather than bincount, whose output size is read back from the device every batch
            hits.index_add_(0, group, correct.double())
            seen.index_add_(0, group, torch.ones_like(correct, dtype=torch.float64))
    hits, seen = all_reduce_sum(hits).tolist(), all_reduce_sum(seen).tolist()
    errors: Dict[str, Dict[int, float]] = {}
    for (corruption, severity), right, count in zip(corrupted.groups, hits, seen):
        errors.setdefault(corruption, {})[severity] = 100.0 * (1.0 - right / count)
    clean_error = None if clean_top1 is None else 100.0 - clean_top1
    return {"errors": errors, "images": int(sum(seen)), "clean_error": clean_error,
            **corruption_summary(errors, clean_error)}
