"""ImageNet pretraining with baseline / TransMix / MixPro recipes: ``main(config)`` builds everything
top-down, the loops live in :mod:`pretrain.engine`.

    python tools/pretrain.py --config configs/pretrain/deit_small_mixpro.yaml --data-path /data/imagenet
    torchrun --nproc_per_node 8 tools/pretrain.py --config ... --data-path ...

Writes to ``--output-dir``: config.yaml (resolved), log.jsonl (one JSON line per epoch),
checkpoint_last.pth, checkpoint_best.pth and checkpoint_epochNNNN.pth every ``--save-every`` epochs.
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import timm
import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3

import pretrain.models  # noqa: F401  (registers PVT v1 in timm)
from mixpro import AttentionOutput, BatchMixer, attention_site

from . import checkpoint as ckpt
from .config import to_yaml
from .data import BadImageCounter, SyntheticBatches, build_datasets, build_loaders
from .gpu_augment import UnsupportedTransform, plan_from_transform
from .gpu_data import (DevicePrefetcher, EncodedImageDataset, collate_encoded, reserve_hardware_queues,
                       resolve_pipeline)
from .distributed import DistInfo, all_gather_objects, barrier, cleanup, init_distributed
from .engine import StepOptions, evaluate, lr_for_batch, train_one_epoch

_logger = logging.getLogger("pretrain")


def build_model(config: argparse.Namespace) -> torch.nn.Module:
    return timm.create_model(config.model, num_classes=config.num_classes, drop_path_rate=config.drop_path,
                             img_size=config.input_size, **config.model_kwargs)


def build_mixer(config: argparse.Namespace, model: torch.nn.Module) -> BatchMixer:
    """The mixer of the recipe; token masks live on the grid of the block whose attention is read."""
    try:
        patch_size = attention_site(model).patch_size
    except TypeError:
        patch_size = None
    mixer_kwargs = dict(
        mixup_alpha=config.mixup, cutmix_alpha=config.cutmix,
        cutmix_minmax=tuple(config.cutmix_minmax) if config.cutmix_minmax else None,
        switch_prob=config.mixup_switch_prob, mix_prob=config.mix_prob, maskmix_prob=config.maskmix_prob,
        mask_patch_size=config.mask_patch_size, maskmix_beta=config.maskmix_beta,
        per_sample_ratio=config.per_sample_ratio, label_smoothing=config.smoothing,
        maskmix_label=config.maskmix_label, cutmix_label=config.cutmix_label, partner=config.partner,
        detach_alpha=config.detach_alpha,
    )
    if patch_size is None:
        mixer = BatchMixer(config.num_classes, patch_size=config.mask_patch_size, **mixer_kwargs)
        if mixer.uses_attention:
            attention_site(model)  # raises the clear "no adapter" error
        return mixer
    return BatchMixer(config.num_classes, patch_size=patch_size, **mixer_kwargs)


def setup_logging(output_dir: Path, is_main: bool) -> None:
    handlers = [logging.StreamHandler()]
    if is_main:
        handlers.append(logging.FileHandler(output_dir / "train.log"))
    logging.basicConfig(level=logging.INFO if is_main else logging.WARNING, handlers=handlers,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s", force=True)


def start_process(config: argparse.Namespace) -> Tuple[DistInfo, Path]:
    """Join the process group, make the output folder (rank 0), set up logging, seed per rank."""
    reserve_hardware_queues(config.data_pipeline)
    dist_info = init_distributed(config.device)
    output_dir = Path(config.output_dir)
    if dist_info.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
    barrier()
    setup_logging(output_dir, dist_info.is_main)
    torch.manual_seed(config.seed + dist_info.rank)
    random.seed(config.seed + dist_info.rank)
    return dist_info, output_dir


def resume_from(path: Path, model, optimizer, scheduler, scaler, model_ema, mixer: BatchMixer,
                dist_info: DistInfo) -> Dict:
    state = ckpt.load_checkpoint(path)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    if model_ema is not None:
        if "model_ema" not in state:
            raise ValueError(f"{path} has no EMA weights but --model-ema is on")
        model_ema.module.load_state_dict(state["model_ema"])
    saved_world = len(state["rng"])
    if saved_world == dist_info.world_size:
        ckpt.set_rng_state(state["rng"][dist_info.rank])
        mixer.load_state_dict(state["mixer"][dist_info.rank])
    else:
        _logger.warning("checkpoint was written by %d processes, this run has %d: random streams restart, so the "
                        "resumed run is not a bit-exact continuation", saved_world, dist_info.world_size)
    _logger.info("resumed from %s (completed epoch %d)", path, state["epoch"])
    return state


def main(config: argparse.Namespace) -> Dict:
    """Train, then leave the process group. Everything built by ``train`` (the DDP wrapper above all)
    is released first: a DDP reducer outliving its process group can hang the process at exit."""
    try:
        return benchmark(config) if config.benchmark else train(config)
    finally:
        gc.collect()
        cleanup()


@dataclass
class TrainingParts:
    mixer: BatchMixer
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: torch.amp.GradScaler
    model_ema: Optional[ModelEmaV3]
    train_model: torch.nn.Module
    lr: float
    global_batch: int


def build_training(config: argparse.Namespace, model: torch.nn.Module, dist_info: DistInfo,
                   updates_per_epoch: int) -> TrainingParts:
    """Mixer, optimizer (lr scaled to the global batch), per-step scheduler, scaler, EMA, and the
    model as trained: wrapped for attention labels, DDP and torch.compile as configured."""
    mixer = build_mixer(config, model)
    device = dist_info.device
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    model_ema = ModelEmaV3(model, decay=config.model_ema_decay) if config.model_ema else None
    global_batch = config.batch_size * dist_info.world_size
    lr = lr_for_batch(config.lr, global_batch, config.lr_base_batch)
    optimizer = create_optimizer_v2(model, opt=config.opt, lr=lr, weight_decay=config.weight_decay,
                                    eps=config.opt_eps, betas=tuple(config.opt_betas))
    scheduler, _ = create_scheduler_v2(optimizer, sched=config.sched, num_epochs=config.epochs,
                                       warmup_epochs=config.warmup_epochs, warmup_lr=config.warmup_lr,
                                       min_lr=config.min_lr, step_on_epochs=False,
                                       updates_per_epoch=updates_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp == "fp16")
    train_model = AttentionOutput(model) if mixer.uses_attention else model
    if dist_info.enabled:
        train_model = torch.nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        train_model = torch.compile(train_model, mode=config.compile_mode)
    return TrainingParts(mixer, optimizer, scheduler, scaler, model_ema, train_model, lr, global_batch)


def build_data(config: argparse.Namespace, model: torch.nn.Module, dist_info: DistInfo):
    """Datasets and loaders of the data pipeline in use: timm's transforms in the loader workers ('cpu'),
    or workers reading bytes for batched nvjpeg decoding and augmentation on the device ('gpu')."""
    train_set, val_set = build_datasets(config, model)
    pipeline = resolve_pipeline(config.data_pipeline, dist_info.device)
    if pipeline == "gpu":
        try:
            plans = plan_from_transform(train_set.transform), plan_from_transform(val_set.transform)
        except UnsupportedTransform as error:
            if config.data_pipeline != "auto":
                raise
            _logger.warning("the GPU data path cannot run this recipe (%s): using the CPU path", error)
            pipeline = "cpu"
    if pipeline == "cpu":
        return (train_set, val_set, *build_loaders(config, train_set, val_set, dist_info.rank, dist_info.world_size),
                pipeline)
    train_set, val_set = EncodedImageDataset.like(train_set, plans[0]), EncodedImageDataset.like(val_set, plans[1])
    train_loader, val_loader, train_sampler, loader_generator = build_loaders(
        config, train_set, val_set, dist_info.rank, dist_info.world_size, collate_encoded)
    train_loader = DevicePrefetcher(train_loader, dist_info.device)
    val_loader = DevicePrefetcher(val_loader, dist_info.device)
    return train_set, val_set, train_loader, val_loader, train_sampler, loader_generator, pipeline


def benchmark(config: argparse.Namespace) -> Dict:
    """Training throughput on synthetic images already on the device (no disk, no decoding): the
    real step of the recipe, ``--benchmark-steps`` timed after ``--benchmark-warmup``. Rank 0 writes
    OUTPUT_DIR/benchmark.json."""
    dist_info, output_dir = start_process(config)
    model = build_model(config)
    parts = build_training(config, model, dist_info, config.benchmark_steps)
    options = StepOptions(amp=config.amp, clip_grad=config.clip_grad, channels_last=config.channels_last,
                          print_freq=max(config.benchmark_steps, 1))
    bad_images = BadImageCounter(1.0, dist_info.device)
    for steps, epoch in ((config.benchmark_warmup, 0), (config.benchmark_steps, 1)):
        batches = SyntheticBatches(config.batch_size, config.input_size, config.num_classes, steps, dist_info.device)
        stats = train_one_epoch(parts.train_model, batches, parts.mixer, parts.optimizer, parts.scheduler,
                                parts.scaler, dist_info.device, epoch, options, bad_images,
                                show_progress=dist_info.is_main)
    result = {"model": config.model, "recipe": config.recipe, "batch_size": config.batch_size,
              "global_batch": parts.global_batch, "processes": dist_info.world_size, "amp": config.amp,
              "compile": config.compile, "compile_mode": config.compile_mode if config.compile else None,
              "channels_last": config.channels_last, "steps": config.benchmark_steps,
              "img_per_s": stats["train_img_per_s"],
              "ms_per_step": 1000 * stats["train_time_s"] / config.benchmark_steps,
              "torch": torch.__version__, "timm": timm.__version__,
              "device": torch.cuda.get_device_name(dist_info.device) if dist_info.device.type == "cuda" else "cpu"}
    if dist_info.is_main:
        (output_dir / "benchmark.json").write_text(json.dumps(result, indent=2) + "\n")
        _logger.info("benchmark: %.1f img/s (%d processes x batch %d, %s, %s)", result["img_per_s"],
                     dist_info.world_size, config.batch_size, config.amp, "compiled" if config.compile else "eager")
    return result


def train(config: argparse.Namespace) -> Dict:
    dist_info, output_dir = start_process(config)
    device = dist_info.device

    model = build_model(config)
    train_set, val_set, train_loader, val_loader, train_sampler, loader_generator, pipeline = build_data(
        config, model, dist_info)
    parts = build_training(config, model, dist_info, len(train_loader))
    mixer, optimizer, scheduler, scaler, model_ema, train_model = (
        parts.mixer, parts.optimizer, parts.scheduler, parts.scaler, parts.model_ema, parts.train_model)
    lr, global_batch = parts.lr, parts.global_batch

    start_epoch, best_top1 = 0, None
    resume_path = ckpt.resolve_resume(config.resume, output_dir)
    if resume_path is not None:
        state = resume_from(resume_path, model, optimizer, scheduler, scaler, model_ema, mixer, dist_info)
        start_epoch, best_top1 = state["epoch"] + 1, state.get("best_top1")

    n_parameters = sum(p.numel() for p in model.parameters())
    _logger.info("model %s: %.2fM parameters; mixer %s", config.model, n_parameters / 1e6, mixer)
    if config.lr_base_batch > 0:
        _logger.info("lr %.3g = %.3g x global batch %d / %d (linear scaling)", lr, config.lr, global_batch,
                     config.lr_base_batch)
    else:
        _logger.info("lr %.3g, not scaled with the global batch of %d", lr, global_batch)
    _logger.info("%d train / %d val images, %d steps per epoch, %d processes on %s, %s data pipeline", len(train_set),
                 len(val_set), len(train_loader), dist_info.world_size, device, pipeline)
    if pipeline == "gpu" and config.compile and config.compile_mode == "default":
        _logger.info("torch.compile's default mode launches the step's kernels from Python, which the GPU data "
                     "path's threads slow down: --compile-mode reduce-overhead trains faster (docs/benchmarks.md)")
    if dist_info.is_main:
        (output_dir / "config.yaml").write_text(to_yaml(config))
    writer = None
    if config.tensorboard and dist_info.is_main:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:
            raise ImportError("--tensorboard needs the tensorboard package: pip install tensorboard") from error
        writer = SummaryWriter(log_dir=str(output_dir / "tensorboard"))

    options = StepOptions(amp=config.amp, clip_grad=config.clip_grad, channels_last=config.channels_last,
                          print_freq=config.print_freq)
    bad_images = BadImageCounter(config.max_bad_fraction, device)
    record: Dict = {}
    for epoch in range(start_epoch, config.epochs):
        train_sampler.set_epoch(epoch)
        loader_generator.manual_seed(config.seed * 100003 + epoch)
        stats = train_one_epoch(train_model, train_loader, mixer, optimizer, scheduler, scaler, device, epoch,
                                options, bad_images, model_ema=model_ema, show_progress=dist_info.is_main)
        if (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs:
            stats.update(evaluate(model, val_loader, device, options))
            if model_ema is not None:
                stats.update({f"ema_{k}": v for k, v in evaluate(model_ema.module, val_loader, device, options).items()})
        top1 = stats.get("val_top1")
        improved = top1 is not None and (best_top1 is None or top1 > best_top1)
        if improved:
            best_top1 = top1
        record = {"epoch": epoch, **stats, "best_top1": best_top1, "n_parameters": n_parameters,
                  "global_batch": global_batch, "recipe": config.recipe, "data_pipeline": pipeline,
                  "time": time.time()}
        save_training_state(output_dir, epoch, record, config, model, optimizer, scheduler, scaler, model_ema,
                            mixer, dist_info, best_top1, improved, (epoch + 1) * len(train_loader))
        if dist_info.is_main:
            with open(output_dir / "log.jsonl", "a") as log:
                log.write(json.dumps(record) + "\n")
            if writer is not None:
                for key, value in stats.items():
                    writer.add_scalar(key, value, epoch)
            _logger.info("epoch %d: %s", epoch, {k: round(v, 4) if isinstance(v, float) else v
                                                 for k, v in stats.items() if not k.startswith("train_share")})
    if writer is not None:
        writer.close()
    return record


def save_training_state(output_dir: Path, epoch: int, record: Dict, config, model, optimizer, scheduler, scaler,
                        model_ema, mixer: BatchMixer, dist_info: DistInfo, best_top1: Optional[float],
                        improved: bool, step: int) -> None:
    """Every rank contributes its RNG and mixer state; rank 0 writes last / best / every-N atomically."""
    rng_states = all_gather_objects(ckpt.rng_state())
    mixer_states = all_gather_objects(mixer.state_dict())
    if not dist_info.is_main:
        return
    state = {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(), "epoch": epoch, "step": step, "best_top1": best_top1,
        "metrics": {k: v for k, v in record.items() if isinstance(v, (int, float)) and v is not None},
        "rng": rng_states, "mixer": mixer_states, "config": vars(config).copy(),
    }
    if model_ema is not None:
        state["model_ema"] = model_ema.module.state_dict()
    ckpt.save_atomic(state, output_dir / ckpt.LAST)
    if improved:
        ckpt.save_atomic(state, output_dir / ckpt.BEST)
    if config.save_every and (epoch + 1) % config.save_every == 0:
        ckpt.save_atomic(state, output_dir / ckpt.epoch_name(epoch + 1))
