"""The pretraining program (baseline / TransMix / MixPro recipes): ``main(config)`` builds everything
top-down through :mod:`pretrain.builder`; the loops live in :mod:`pretrain.engine`. Nothing imports
this module but ``tools/train.py``.

    python tools/train.py --config configs/pretrain/deit_small_mixpro.yaml --data-path /data/imagenet
    torchrun --nproc_per_node 8 tools/train.py --config ... --data-path ...

Writes to ``--output-dir``: config.yaml (resolved; also as timm's args.yaml), log.jsonl (one JSON line per
epoch), summary.csv (timm's columns), checkpoint_last.pth, checkpoint_best.pth and checkpoint_epochNNNN.pth
every ``--save-every`` epochs.
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import time
from pathlib import Path
from typing import Dict, List, Optional

import timm
import torch

from . import checkpoint as ckpt
from . import records
from .builder import (TrainingParts, build_data, build_mixer, build_model, build_training, open_datasets,
                      start_process, step_options)
from .config import to_yaml
from .data import BadImageCounter, SyntheticBatches, set_epoch
from .distributed import DistInfo, all_gather_objects, cleanup
from .engine import evaluate, train_one_epoch, updates_per_epoch
from .errors import ConfigError
from .resume import ConfigDiff, check_same_data, data_identity, describe, plan_resume, remove_stale_temporaries

_logger = logging.getLogger("pretrain")


def restore(state: Dict, diff: ConfigDiff, model, parts: TrainingParts, dist_info: DistInfo,
            updates_per_epoch: int) -> None:
    """Load the resumed state into what this command line built. Hyperparameters stay this command
    line's (they equal the saved ones unless --resume-allow-change let them differ); the scheduler,
    built for this command line's epochs, is positioned at the resumed step."""
    model.load_state_dict(state["model"])
    optimizer = parts.optimizer
    saved_groups = len(state["optimizer"]["param_groups"])
    if "opt" in diff.allowed or saved_groups != len(optimizer.param_groups):
        # another optimizer, or another grouping (timm puts norms and biases in a group of their own only
        # when weight decay is on): the saved moments do not fit, the optimizer starts afresh
        _logger.warning("optimizer state not restored: the allowed change of %s gives another optimizer layout "
                        "(%d parameter groups saved, %d now)", ", ".join(sorted(diff.allowed)), saved_groups,
                        len(optimizer.param_groups))
    else:
        hyperparameters = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
        optimizer.load_state_dict(state["optimizer"])
        for group, own in zip(optimizer.param_groups, hyperparameters):
            group.update(own)
    parts.scheduler.step_update(num_updates=(state["epoch"] + 1) * updates_per_epoch)
    if parts.scaler.is_enabled() and state["scaler"]:
        parts.scaler.load_state_dict(state["scaler"])
    elif parts.scaler.is_enabled():
        _logger.warning("the checkpoint has no loss-scaler state (trained without --amp fp16): the scale starts afresh")
    if parts.model_ema is not None:
        if "model_ema" in state:
            parts.model_ema.module.load_state_dict(state["model_ema"])
        else:
            parts.model_ema.module.load_state_dict(state["model"])
            _logger.warning("the checkpoint has no EMA weights: the EMA starts from the resumed weights")
    saved_world = len(state["rng"])
    learned = {}  # the learnable alpha (the same in every process), when this run has one
    if parts.mixer.learnable_parameters():
        if "alpha_logit" in state["mixer"][0]:
            learned = {"alpha_logit": state["mixer"][0]["alpha_logit"]}
        else:
            _logger.warning("the resumed run had no learnable alpha (--alpha-rule changed): it starts at 0.5")
            learned = {"alpha_logit": 0.0}
    if saved_world == dist_info.world_size:
        ckpt.set_rng_state(state["rng"][dist_info.rank])
        parts.mixer.load_state_dict({**state["mixer"][dist_info.rank], **learned})
    else:
        _logger.warning("checkpoint was written by %d processes, this run has %d: random streams restart, so the "
                        "resumed run is not a bit-exact continuation", saved_world, dist_info.world_size)
        if learned:
            parts.mixer.load_state_dict({**parts.mixer.state_dict(), **learned})


def main(config: argparse.Namespace) -> Dict:
    """Train, then leave the process group. Everything built by ``train`` (the DDP wrapper above all)
    is released first: a DDP reducer outliving its process group can hang the process at exit."""
    if not config.benchmark and not config.data_path:
        raise ConfigError("--data-path is required: the dataset root holding train/ and val/ class folders (or "
                          "train.tar and val.tar), or the root of a --dataset torch/NAME; --benchmark measures speed "
                          "without data")
    try:
        return benchmark(config) if config.benchmark else train(config)
    finally:
        gc.collect()
        cleanup()


def benchmark(config: argparse.Namespace) -> Dict:
    """Training throughput on synthetic images already on the device (no disk, no decoding): the
    real step of the recipe, ``--benchmark-steps`` timed after ``--benchmark-warmup``. Rank 0 writes
    OUTPUT_DIR/benchmark.json."""
    dist_info, output_dir = start_process(config)
    if config.num_classes is None:
        config.num_classes = 1000  # no data to count classes in
    model = build_model(config)
    parts = build_training(config, model, dist_info, updates_per_epoch(config.benchmark_steps, config.grad_accum_steps))
    options = step_options(config, print_freq=config.benchmark_steps)
    bad_images = BadImageCounter(1.0, dist_info.device)
    parts.mixer.set_progress(0, 1)
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
    datasets = open_datasets(config)  # first: --num-classes may come from the data
    resumed = plan_resume(config, output_dir, dist_info)
    history = resumed.history if resumed else []  # every resume of the run, with its changes
    if dist_info.is_main:
        remove_stale_temporaries(output_dir)

    model = build_model(config, load_pretrained=resumed is None)  # a resumed run has its own weights
    if config.pretrained and resumed is None:
        _logger.info("weights: timm's pretrained %s%s", config.model,
                     f" ({config.model_kwargs['pretrained_cfg_overlay']})"
                     if "pretrained_cfg_overlay" in config.model_kwargs else "")
    if config.initial_checkpoint and resumed is None:  # a resumed run has its own weights
        fresh = ckpt.initialise_from(model, Path(config.initial_checkpoint))
        _logger.info("weights from %s%s", config.initial_checkpoint,
                     f"; classifier re-initialised ({', '.join(fresh)})" if fresh else "")
    mixer = build_mixer(config, model)
    data = build_data(config, model, dist_info, datasets)
    train_loader, val_loader, pipeline = data.train_loader, data.val_loader, data.pipeline
    if resumed is not None:
        check_same_data(resumed.state, data.train_set, config.resume_allow_change)
    updates = updates_per_epoch(len(train_loader), config.grad_accum_steps)
    parts = build_training(config, model, dist_info, updates, mixer)
    optimizer, scheduler, scaler, model_ema, train_model = (
        parts.optimizer, parts.scheduler, parts.scaler, parts.model_ema, parts.train_model)
    lr, global_batch = parts.lr, parts.global_batch

    start_epoch, best_top1 = 0, None
    resume_entry = None
    if resumed is not None:
        describe(resumed.diff, resumed.path, resumed.state)
        restore(resumed.state, resumed.diff, model, parts, dist_info, updates)
        start_epoch, best_top1 = resumed.state["epoch"] + 1, resumed.state.get("best_top1")
        if dist_info.is_main:
            records.reconcile(output_dir, resumed.state)
        if start_epoch >= config.epochs:
            _logger.info("the run has completed its %d epochs: nothing to train (pass a larger --epochs to extend "
                         "its schedule)", config.epochs)
        resume_entry = resumed.history[-1]
        del resumed  # the optimizer state on the host is no longer needed

    n_parameters = sum(p.numel() for p in model.parameters())
    _logger.info("model %s: %.2fM parameters; mixer %s", config.model, n_parameters / 1e6, mixer)
    batch_text = (f"{dist_info.world_size} processes x batch {config.batch_size}"
                  + (f" x {config.grad_accum_steps} accumulated steps" if config.grad_accum_steps > 1 else ""))
    if config.lr_base_batch > 0:
        _logger.info("lr %.3g = %.3g x global batch %d / %d (linear scaling; global batch = %s)", lr, config.lr,
                     global_batch, config.lr_base_batch, batch_text)
    else:
        _logger.info("lr %.3g, not scaled with the global batch of %d (%s)", lr, global_batch, batch_text)
    _logger.info("%d train / %d val images, %d steps and %d updates per epoch, %d processes on %s%s, %s data "
                 "pipeline", len(data.train_set), len(data.val_set), len(train_loader), updates, dist_info.world_size,
                 device, " (chosen by --device auto)" if config.device == "auto" else "", pipeline)
    if config.mixup_off_epoch:
        _logger.info("mixing stops at epoch %d (--mixup-off-epoch): later batches get label smoothing only",
                     config.mixup_off_epoch)
    if pipeline == "gpu" and config.compile and config.compile_mode == "default":
        _logger.info("torch.compile's default mode launches the step's kernels from Python, which the GPU data "
                     "path's threads slow down: --compile-mode reduce-overhead trains faster (docs/benchmarks.md)")
    if dist_info.is_main:
        resolved = to_yaml(config, leave_out=("resume_allow_change",))
        (output_dir / "config.yaml").write_text(resolved)
        (output_dir / "args.yaml").write_text(resolved)  # where timm users look for it
    writer = None
    if config.tensorboard and dist_info.is_main:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:
            raise ImportError("--tensorboard needs the tensorboard package: pip install tensorboard") from error
        writer = SummaryWriter(log_dir=str(output_dir / "tensorboard"))

    options = step_options(config, print_freq=config.print_freq)
    bad_images = BadImageCounter(config.max_bad_fraction, device)
    record: Dict = {}
    for epoch in range(start_epoch, config.epochs):
        set_epoch(train_loader, epoch)
        mixer.set_progress(epoch, config.epochs)  # the epoch-dependent alpha rules of Table 10
        stats = train_one_epoch(train_model, train_loader, mixer, optimizer, scheduler, scaler, device, epoch,
                                options, bad_images, model_ema=model_ema, show_progress=dist_info.is_main)
        if (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs:
            stats.update(evaluate(model, val_loader, device, options, show_progress=dist_info.is_main))
            if model_ema is not None:
                stats.update({f"ema_{k}": v for k, v in evaluate(model_ema.module, val_loader, device, options,
                                                                 show_progress=dist_info.is_main).items()})
        learned = mixer.learned_alpha()  # Table 10's learnable alpha, as it stands after the epoch
        if learned is not None:
            stats["train_alpha_learned"] = learned
        top1 = stats.get("val_top1")
        improved = top1 is not None and (best_top1 is None or top1 > best_top1)
        if improved:
            best_top1 = top1
        record = {"epoch": epoch, **stats, "best_top1": best_top1, "n_parameters": n_parameters,
                  "global_batch": global_batch, "recipe": config.recipe, "data_pipeline": pipeline,
                  "time": time.time()}
        if resume_entry is not None and epoch == start_epoch:
            record["resumed"] = resume_entry
        save_training_state(output_dir, epoch, record, config, model, parts, dist_info, best_top1, improved,
                            (epoch + 1) * updates, history, data_identity(data.train_set))
        if dist_info.is_main:
            records.append_record(output_dir, record)
            if writer is not None:
                for key, value in stats.items():
                    writer.add_scalar(key, value, epoch)
            _logger.info("epoch %d: %s", epoch, {k: round(v, 4) if isinstance(v, float) else v
                                                 for k, v in stats.items() if not k.startswith("train_share")})
    if writer is not None:
        writer.close()
    return record


def save_training_state(output_dir: Path, epoch: int, record: Dict, config, model, parts: TrainingParts,
                        dist_info: DistInfo, best_top1: Optional[float], improved: bool, step: int,
                        config_history: List[Dict], data: Dict) -> None:
    """Every rank contributes its RNG and mixer state; rank 0 writes last / best / every-N atomically.
    The epoch's log record travels inside, so a kill before the log line is written loses nothing."""
    rng_states = all_gather_objects(ckpt.rng_state())
    mixer_states = all_gather_objects(parts.mixer.state_dict())
    if not dist_info.is_main:
        return
    state = {
        "model": model.state_dict(), "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict(), "scaler": parts.scaler.state_dict(), "epoch": epoch, "step": step,
        "best_top1": best_top1, "metrics": {k: v for k, v in record.items() if isinstance(v, (int, float))},
        "record": record, "rng": rng_states, "mixer": mixer_states, "config": vars(config).copy(),
        "config_history": config_history, "data": data,
    }
    if parts.model_ema is not None:
        state["model_ema"] = parts.model_ema.module.state_dict()
    ckpt.save_atomic(state, output_dir / ckpt.LAST)
    if improved:
        ckpt.save_atomic(state, output_dir / ckpt.BEST)
    if config.save_every and (epoch + 1) % config.save_every == 0:
        ckpt.save_atomic(state, output_dir / ckpt.epoch_name(epoch + 1))
