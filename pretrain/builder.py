"""Builders of a pretraining run from its resolved configuration (:mod:`.config`): the process
(distributed group, output folder, logging, seeds), the model, the data, and the training parts
(mixer, optimiser, scheduler, scaler, EMA, the model as trained). The program (:mod:`.main`), the
benchmarks and the tools build from here."""
from __future__ import annotations

import argparse
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import timm
import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3

import pretrain.models  # noqa: F401  (registers PVT v1 in timm)
from mixpro import AttentionOutput, BatchMixer, attention_site, find_attention_site

from .data import (EXPECTED_LAYOUT, DataLayoutError, FactoryDataset, RobustImageDataset, build_transforms,
                   choose_pipeline, create_loader, empty_class_folders, reserve_hardware_queues, split_location)
from .distributed import DistInfo, barrier, init_distributed
from .errors import ConfigError
from .engine import StepOptions, lr_for_batch

_logger = logging.getLogger("pretrain")


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


def build_model(config: argparse.Namespace, load_pretrained: bool = True) -> torch.nn.Module:
    """The timm model of ``--model``; with ``--pretrained`` (unless ``load_pretrained`` is False: a
    resumed run), timm's pretrained weights (its classifier re-initialised by timm when ``--num-classes``
    differs)."""
    # num_classes is None only before the data is opened (open_datasets counts it): the model's own head then
    classes = {} if config.num_classes is None else {"num_classes": config.num_classes}
    try:
        return timm.create_model(config.model, pretrained=config.pretrained and load_pretrained,
                                 drop_path_rate=config.drop_path,
                                 img_size=config.input_size, **classes, **config.model_kwargs)
    except TypeError as error:
        if not config.model_kwargs:
            raise
        raise ConfigError(f"--model-kwargs {config.model_kwargs}: {config.model} does not take them ({error})") from None
    except (OSError, RuntimeError) as error:  # no network, no cached weights, or a file that does not fit
        if not (config.pretrained and load_pretrained):
            raise
        raise ConfigError(f"--pretrained: timm could not load pretrained weights of {config.model}: {error} (without "
                          f"network, give a file: --initial-checkpoint PATH)") from None


def build_mixer(config: argparse.Namespace, model: torch.nn.Module) -> BatchMixer:
    """The mixer of the recipe, checked against the input size before any work; token masks live on
    the grid of the block whose attention is read."""
    try:
        mixer = _mixer_for(config, model)
        mixer.check_image_size((config.input_size, config.input_size))
    except (TypeError, ValueError) as error:  # no adapter, or sizes that do not fit: say which flags set them
        raise ConfigError(f"{error} (--input-size {config.input_size}, --mask-patch-size {config.mask_patch_size}, "
                          f"--model {config.model})") from None
    return mixer


def _mixer_for(config: argparse.Namespace, model: torch.nn.Module) -> BatchMixer:
    site = find_attention_site(model)
    mixer_kwargs = dict(
        mixup_alpha=config.mixup, cutmix_alpha=config.cutmix,
        cutmix_minmax=tuple(config.cutmix_minmax) if config.cutmix_minmax else None,
        switch_prob=config.mixup_switch_prob, mix_prob=config.mix_prob, maskmix_prob=config.maskmix_prob,
        mask_patch_size=config.mask_patch_size, maskmix_beta=config.maskmix_beta,
        per_sample_ratio=config.per_sample_ratio, label_smoothing=config.smoothing,
        maskmix_label=config.maskmix_label, cutmix_label=config.cutmix_label, partner=config.partner,
        detach_alpha=config.detach_alpha, smooth_pal_targets=config.smooth_pal_targets,
        mask_strategy=config.mask_strategy, mask_grid_offset=config.mask_grid_offset,
        subpatch_cells=config.subpatch_cells, maskmix_shuffle=config.maskmix_shuffle, cutmix_snap=config.cutmix_snap,
        alpha_rule=config.alpha_rule,
    )
    if site is not None:
        return BatchMixer(config.num_classes, patch_size=site.patch_size, **mixer_kwargs)
    mixer = BatchMixer(config.num_classes, patch_size=config.mask_patch_size, **mixer_kwargs)
    if mixer.uses_attention:
        attention_site(model)  # raises the clear "no adapter" error
    return mixer


def step_options(config: argparse.Namespace, print_freq: int) -> StepOptions:
    """How the training step runs, from the configuration."""
    return StepOptions(amp=config.amp, clip_grad=config.clip_grad, channels_last=config.channels_last,
                       print_freq=print_freq, accumulate=config.grad_accum_steps,
                       mixup_off_epoch=config.mixup_off_epoch)


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
                   updates_per_epoch: int, mixer: Optional[BatchMixer] = None) -> TrainingParts:
    """Mixer (unless given), optimizer (lr scaled to the global batch: processes x batch x
    accumulation steps), per-update scheduler, scaler, EMA, and the model as trained: wrapped for
    attention labels, DDP and torch.compile as configured."""
    mixer = mixer or build_mixer(config, model)
    device = dist_info.device
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    model_ema = ModelEmaV3(model, decay=config.model_ema_decay) if config.model_ema else None
    global_batch = config.batch_size * dist_info.world_size * config.grad_accum_steps
    lr = lr_for_batch(config.lr, global_batch, config.lr_base_batch)
    mixer.to(device)
    optimizer = create_optimizer_v2(model, opt=config.opt, lr=lr, weight_decay=config.weight_decay,
                                    eps=config.opt_eps, betas=tuple(config.opt_betas))
    if mixer.learnable_parameters():  # Table 10's learnable alpha, optimised with the model, never decayed
        optimizer.add_param_group({"params": mixer.learnable_parameters(), "weight_decay": 0.0})
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
        # modes are inductor's; another backend takes none
        mode = config.compile_mode if config.compile_backend == "inductor" else None
        train_model = torch.compile(train_model, mode=mode, backend=config.compile_backend)
    return TrainingParts(mixer, optimizer, scheduler, scaler, model_ema, train_model, lr, global_batch)


@dataclass
class DataParts:
    train_set: RobustImageDataset
    val_set: RobustImageDataset
    train_loader: object  # a DataLoader, or a DevicePrefetcher on the GPU path
    val_loader: object
    pipeline: str


def open_datasets(config: argparse.Namespace) -> Tuple[RobustImageDataset, RobustImageDataset]:
    """The train and val sets named by ``--dataset`` / ``--data-path`` and the split options, without
    transforms yet (the model's data config decides them). Their classes must agree with each other
    and with ``--num-classes``; when that is not given, it is set to their count here."""
    if config.dataset:
        train = FactoryDataset(config.dataset, config.data_path, config.train_split, download=config.dataset_download)
        val = FactoryDataset(config.dataset, config.data_path, config.val_split, download=config.dataset_download)
    else:
        train = RobustImageDataset(split_location(config.data_path, config.train_split), class_map=config.class_map)
        val = RobustImageDataset(split_location(config.data_path, config.val_split), class_map=config.class_map)
    classes = train.class_to_idx
    for dataset in (train, val) if not config.class_map else ():
        empty = empty_class_folders(dataset)
        if empty:
            raise DataLayoutError(f"{dataset.location!r} has class folder(s) without images: {empty[:10]}"
                                  f"{' ...' if len(empty) > 10 else ''}; every class needs images in train and val")
    if config.num_classes is not None and len(classes) != config.num_classes:
        raise DataLayoutError(f"{train.location!r} has {len(classes)} {'classes' if config.dataset else 'class folders'} "
                              f"but --num-classes is "
                              f"{config.num_classes} (leave it out to take the count from the data)"
                              + ("" if config.dataset else "; " + EXPECTED_LAYOUT.format(root=config.data_path)))
    if val.class_to_idx != classes:
        only_train = sorted(set(classes) - set(val.class_to_idx))[:5]
        only_val = sorted(set(val.class_to_idx) - set(classes))[:5]
        raise DataLayoutError(f"train and val classes differ: only in train {only_train}, only in val {only_val}"
                              + ("" if config.dataset else "; " + EXPECTED_LAYOUT.format(root=config.data_path)))
    if config.num_classes is None:
        config.num_classes = len(classes)
        _logger.info("--num-classes %d, from the classes of %s", config.num_classes, train.location)
    return train, val


def build_datasets(config: argparse.Namespace, model: torch.nn.Module,
                   datasets: Optional[Tuple[RobustImageDataset, RobustImageDataset]] = None,
                   ) -> Tuple[RobustImageDataset, RobustImageDataset]:
    """Train and val sets (:func:`open_datasets`, unless given) with the recipe's transforms."""
    train, val = datasets or open_datasets(config)
    train.transform, val.transform = build_transforms(config, model)
    return train, val


def build_data(config: argparse.Namespace, model: torch.nn.Module, dist_info: DistInfo,
               datasets: Optional[Tuple[RobustImageDataset, RobustImageDataset]] = None) -> DataParts:
    """Datasets (:func:`open_datasets` unless given) and the loaders of the data pipeline in use
    (:func:`pretrain.data.choose_pipeline`)."""
    train_set, val_set = build_datasets(config, model, datasets)
    pipeline = choose_pipeline(config.data_pipeline, dist_info.device, (train_set.transform, val_set.transform),
                               from_files=train_set.reader is not None and val_set.reader is not None)
    common = dict(workers=config.workers, rank=dist_info.rank, world_size=dist_info.world_size,
                  pin_memory=config.pin_memory)
    train_loader = create_loader(train_set, pipeline, dist_info.device, config.batch_size, training=True,
                                 seed=config.seed, **common)
    val_loader = create_loader(val_set, pipeline, dist_info.device, config.eval_batch_size or config.batch_size,
                               **common)
    return DataParts(train_set, val_set, train_loader, val_loader, pipeline)
