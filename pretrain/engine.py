"""Training and evaluation loops. They know nothing of the model family: the mixer decides the
labels, and an attention probe (or None) supplies the class-token attention when labels need it.

The step never reads a device value back to the host; the loss is checked for NaN/inf and the
progress bar updated every ``print_freq`` steps and at the end of the epoch.
"""
from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Dict, Tuple

import torch
from tqdm import tqdm

from mixpro import BatchMixer, MixedBatch, soft_target_cross_entropy
from mixpro.mixer import KINDS

from .data.folders import BadImageCounter
from .distributed import all_reduce_sum, average_gradients

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class StepOptions:
    amp: str = "bf16"
    clip_grad: float = 0.0
    channels_last: bool = False
    print_freq: int = 50
    accumulate: int = 1  # steps per optimiser update
    mixup_off_epoch: int = 0  # from this epoch on batches are not mixed (0: never)

    def autocast(self, device: torch.device):
        dtype = AMP_DTYPES[self.amp]
        if dtype is None:
            return nullcontext()
        return torch.autocast(device.type, dtype=dtype)


class LabelStatistics:
    """Per-epoch distribution of alpha, lam_area and lam_attn on MaskMix batches, and batch kinds.

    Values are binned on the device (100 bins on [0, 1]); means and quantiles are read once at
    the end of the epoch."""

    BINS = 100
    NAMES = ("alpha", "lam_area", "lam_attn")

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.hist = {name: torch.zeros(self.BINS, device=device, dtype=torch.float64) for name in self.NAMES}
        self.sums = {name: torch.zeros((), device=device, dtype=torch.float64) for name in self.NAMES}
        self.kinds = {kind: 0 for kind in KINDS}

    def update(self, batch) -> None:
        self.kinds[batch.kind] += 1
        if batch.kind != "maskmix":
            return
        for name in self.NAMES:
            value = getattr(batch, name)
            if value is None:
                continue
            value = value.detach().double().clamp(0.0, 1.0)
            self.hist[name] += torch.histc(value, bins=self.BINS, min=0.0, max=1.0)
            self.sums[name] += value.sum()

    def summary(self) -> Dict[str, float]:
        out: Dict[str, float] = {}
        kinds = all_reduce_sum(torch.tensor([self.kinds[k] for k in KINDS], device=self.device, dtype=torch.float64))
        total = max(kinds.sum().item(), 1.0)
        for kind, count in zip(KINDS, kinds.tolist()):
            out[f"share_{kind}"] = count / total
        for name in self.NAMES:
            hist = all_reduce_sum(self.hist[name]).cpu()
            count = hist.sum().item()
            if count == 0:
                continue
            out[f"{name}_mean"] = all_reduce_sum(self.sums[name]).item() / count
            cdf = hist.cumsum(0) / count
            for q in (0.1, 0.25, 0.5, 0.75, 0.9):
                index = int(torch.searchsorted(cdf, torch.tensor(q, dtype=cdf.dtype)).item())
                out[f"{name}_q{int(q * 100):02d}"] = (min(index, self.BINS - 1) + 0.5) / self.BINS
        return out


def _check_finite(nonfinite: torch.Tensor, epoch: int, step: int) -> None:
    if bool(nonfinite.item()):
        raise NonFiniteLossError(
            f"non-finite training loss by epoch {epoch} step {step}: stopping before anything is saved, so the "
            f"last checkpoint is the last good one. Try a lower --lr, --clip-grad, or --amp bf16 instead of fp16.")


def updates_per_epoch(steps: int, accumulate: int) -> int:
    """Optimiser updates of an epoch of ``steps`` batches with gradients summed over ``accumulate``
    of them (a shorter last group still updates)."""
    return -(-steps // accumulate)


def _without_gradient_sync(model: torch.nn.Module):
    """DDP's no_sync for a step whose gradients are only accumulated (also through torch.compile)."""
    inner = getattr(model, "_orig_mod", model)
    if isinstance(inner, torch.nn.parallel.DistributedDataParallel):
        return inner.no_sync()
    return nullcontext()


def train_step(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, mixer: BatchMixer, optimizer,
               scaler, device: torch.device, options: StepOptions, accumulate: int = 1, update: bool = True,
               mix: bool = True) -> Tuple[torch.Tensor, MixedBatch]:
    """One step of mixed training: mix (``mix`` False: the batch as it is, label smoothing only),
    forward (under the configured autocast), the mixer's soft targets (from the class-token attention
    when ``model`` is wrapped in ``mixpro.AttentionOutput``), soft-target cross-entropy, backward.
    The loss is divided by ``accumulate``, the number of steps whose gradients make one update; with
    ``update`` the update follows: clipping, optimiser and scaler steps, gradients cleared. Returns
    the detached loss (on the device: nothing is read back) and the mixed batch."""
    batch = mixer(images, labels, kind=None if mix else "none")
    with nullcontext() if update else _without_gradient_sync(model):
        with options.autocast(device):
            output = model(batch.images)
        logits, attn = output if isinstance(output, tuple) else (output, None)
        targets = mixer.targets(batch, logits, attn)
        loss = soft_target_cross_entropy(logits, targets)
        scaler.scale(loss / accumulate if accumulate > 1 else loss).backward()
    if update:
        if mix:  # outside the model, DDP does not average them; with mixing off no batch uses them
            average_gradients(mixer.learnable_parameters())
        if options.clip_grad > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), options.clip_grad)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
    return loss.detach(), batch


def train_one_epoch(model: torch.nn.Module, loader, mixer: BatchMixer, optimizer, scheduler, scaler,
                    device: torch.device, epoch: int, options: StepOptions, bad_images: BadImageCounter,
                    model_ema=None, show_progress: bool = True, reduce=all_reduce_sum) -> Dict[str, float]:
    """One epoch of mixed training. ``model`` returns logits, or ``(logits, attention)`` when wrapped
    in ``mixpro.AttentionOutput`` because the mixer's labels need the class-token attention. Every
    ``options.accumulate`` steps (and at the end of the epoch) the optimiser updates, and the scheduler
    and EMA follow the update count. Returns mean loss, last lr, throughput, bad images and label
    statistics."""
    model.train()
    steps = len(loader)
    accumulate = options.accumulate
    first_update = epoch * updates_per_epoch(steps, accumulate)
    short_group_start = steps - steps % accumulate  # the steps from here on make a shorter last update
    mix = not (options.mixup_off_epoch and epoch >= options.mixup_off_epoch)
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    nonfinite = torch.zeros((), device=device, dtype=torch.bool)
    stats = LabelStatistics(device)
    progress = tqdm(total=steps, desc=f"epoch {epoch}", disable=not show_progress, dynamic_ncols=True)
    start = window_start = time.perf_counter()
    images_seen = window_images = 0
    first_window = None  # (time, images) when the first print window ended: loader start-up is behind
    for step, (images, labels, bad) in enumerate(loader):
        bad_images.update(bad)
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        if options.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        update = (step + 1) % accumulate == 0 or step + 1 == steps
        group = steps % accumulate if step >= short_group_start else accumulate
        loss, batch = train_step(model, images, labels, mixer, optimizer, scaler, device, options,
                                 accumulate=group, update=update, mix=mix)
        if update:
            updates = first_update + step // accumulate + 1
            scheduler.step_update(num_updates=updates)
            if model_ema is not None:
                model_ema.update(model, step=updates)
        loss_sum += loss
        nonfinite |= ~torch.isfinite(loss)
        stats.update(batch)
        images_seen += images.shape[0]
        window_images += images.shape[0]
        if (step + 1) % options.print_freq == 0 or step + 1 == steps:
            _check_finite(nonfinite, epoch, step)
            bad_images.check(reduce)
            now = time.perf_counter()
            progress.set_postfix(loss=f"{loss.item():.4f}", lr=f"{optimizer.param_groups[0]['lr']:.3g}",
                                 img_s=f"{window_images / max(now - window_start, 1e-9):.0f}")
            progress.update((step + 1) - progress.n)
            window_start, window_images = now, 0
            if first_window is None:
                first_window = (now, images_seen)
    progress.close()
    end = time.perf_counter()
    elapsed = end - start
    later_images = images_seen - first_window[1] if first_window else 0
    counts = torch.tensor([float(steps), float(images_seen), float(later_images)], device=device, dtype=torch.float64)
    loss_total, step_total, image_total, later_total = reduce(torch.cat([loss_sum.view(1), counts])).tolist()
    return {
        "train_loss": loss_total / step_total,
        "train_lr": optimizer.param_groups[0]["lr"],
        "train_img_per_s": image_total / elapsed,
        # after the first print window, without the loader's start-up: the rate of a long epoch
        **({"train_img_per_s_steady": later_total / (end - first_window[0])} if later_total else {}),
        "train_time_s": elapsed,
        "bad_images": bad_images.check(reduce),
        **{f"train_{key}": value for key, value in stats.summary().items()},
    }


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader, device: torch.device, options: StepOptions,
             show_progress: bool = False, reduce=all_reduce_sum) -> Dict[str, float]:
    """Top-1 / top-5 accuracy (%) and cross-entropy over the whole (sharded) loader."""
    model.eval()
    sums = torch.zeros(4, device=device, dtype=torch.float64)  # correct@1, correct@5, loss, count
    for images, labels, _ in tqdm(loader, desc="eval", disable=not show_progress, dynamic_ncols=True):
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        if options.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with options.autocast(device):
            logits = model(images)
        logits = logits.float()
        top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top5 == labels[:, None]
        sums += torch.stack([hits[:, 0].sum(), hits.any(1).sum(),
                             torch.nn.functional.cross_entropy(logits, labels, reduction="sum"),
                             torch.tensor(labels.shape[0], device=device)]).double()
    correct1, correct5, loss, count = reduce(sums).tolist()
    if count == 0:
        raise ValueError("evaluation loader is empty")
    return {"val_top1": 100.0 * correct1 / count, "val_top5": 100.0 * correct5 / count,
            "val_loss": loss / count, "val_images": int(count)}


def lr_for_batch(base_lr: float, global_batch: int, base_batch: int) -> float:
    """Linear scaling rule: base_lr at base_batch images per step (0 disables scaling)."""
    if base_batch <= 0:
        return base_lr
    return base_lr * global_batch / base_batch
