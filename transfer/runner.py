"""Glue between the command line and mmengine's Runner, shared by the segmentation and detection
tools (imports mmengine lazily: the pretraining package itself does not need OpenMMLab).

- ``parse_runner_args`` / ``build_config``: config file + --work-dir, --resume, --amp, --cfg-options,
  --launcher, as OpenMMLab's own train/test scripts.
- ``check_inputs``: data roots, annotation files and checkpoints that do not exist fail with one
  line naming them, before any model or dataset is built.
- ``trusted_checkpoint_loading``: torch >= 2.6 loads with ``weights_only=True``, which cannot read
  the message-hub state mmengine stores in its checkpoints; only while the runner resumes from or
  loads the checkpoint the user named is full unpickling allowed.
"""
from __future__ import annotations

import argparse
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional

from pretrain.errors import InputNotFoundError, UserError


def parse_runner_args(description: str, train: bool, argv: Optional[List[str]] = None) -> argparse.Namespace:
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("config", help="config file")
    if not train:
        parser.add_argument("checkpoint", help="checkpoint of the fine-tuned model (from the train tool)")
    parser.add_argument("--work-dir", help="folder for logs and checkpoints (default: work_dirs/<config name>)")
    if train:
        parser.add_argument("--resume", nargs="?", const="auto", default=None,
                            help="resume from the latest checkpoint of the work dir, or from the one given")
    parser.add_argument("--amp", action="store_true", help="mixed precision (AmpOptimWrapper, dynamic loss scale)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default={}, metavar="KEY=VALUE",
                        help="override config entries, e.g. model.backbone.init_cfg.checkpoint=ckpt.pth")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none",
                        help="'pytorch' under torchrun for several GPUs or nodes")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    return args


def build_config(args: argparse.Namespace, train: bool):
    from mmengine.config import Config

    config_path = Path(args.config)
    if not config_path.is_file():
        raise InputNotFoundError(f"config file {args.config} does not exist")
    cfg = Config.fromfile(str(config_path))
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    cfg.work_dir = args.work_dir or cfg.get("work_dir") or str(Path("work_dirs") / config_path.stem)
    if args.amp:
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.setdefault("loss_scale", "dynamic")
    if train and args.resume:
        resume_from = checkpoint_to_resume(Path(cfg.work_dir)) if args.resume == "auto" else Path(args.resume)
        cfg.resume = resume_from is not None
        cfg.load_from = str(resume_from) if resume_from is not None else None
    if not train:
        cfg.load_from = args.checkpoint
    return cfg


def checkpoint_to_resume(work_dir: Path) -> Optional[Path]:
    """The checkpoint named by WORK_DIR/last_checkpoint (what mmengine's auto-resume reads), accepted
    only inside the work dir: resuming unpickles it fully, so a pointer elsewhere is refused."""
    pointer = work_dir / "last_checkpoint"
    if not pointer.is_file():
        print(f"--resume: no last_checkpoint in {work_dir}: starting fresh")
        return None
    named = Path(pointer.read_text().strip())
    # mmengine writes the path as the work dir was spelled (relative to where it ran); try the work dir too
    target = (named if named.exists() or named.is_absolute() else work_dir / named.name).resolve()
    if work_dir.resolve() not in target.parents:
        raise UserError(f"{pointer} names {target}, outside the work dir {work_dir.resolve()}: refusing to unpickle it; "
                        f"pass --resume PATH to resume from a checkpoint you trust")
    if not target.is_file():
        raise InputNotFoundError(f"{pointer} names {target}, which does not exist")
    return target


def _dataset_inputs(dataset) -> Iterator[Path]:
    if dataset is None:
        return
    if "datasets" in dataset:  # ConcatDataset and friends
        for child in dataset["datasets"]:
            yield from _dataset_inputs(child)
        return
    if "dataset" in dataset:  # RepeatDataset and friends
        yield from _dataset_inputs(dataset["dataset"])
        return
    root = Path(dataset.get("data_root") or "")
    if dataset.get("data_root"):
        yield root
    if dataset.get("ann_file"):
        yield root / dataset["ann_file"]
    for prefix in (dataset.get("data_prefix") or {}).values():
        if isinstance(prefix, str) and prefix:
            yield root / prefix


def check_inputs(cfg, train: bool) -> None:
    """One error line for the first input that does not exist, before anything is built."""
    loaders = ["train_dataloader", "val_dataloader"] if train else ["test_dataloader"]
    paths = []
    for name in loaders:
        if cfg.get(name):
            paths += [(f"{name} dataset", path) for path in _dataset_inputs(cfg[name].get("dataset"))]
    for name in ("val_evaluator", "test_evaluator"):
        evaluator = cfg.get(name)
        for metric in evaluator if isinstance(evaluator, list) else [evaluator]:
            if metric and metric.get("ann_file"):
                paths.append((f"{name} annotation file", Path(metric["ann_file"])))
    init = cfg.model.get("backbone", {}).get("init_cfg") or {}
    if train and init.get("type") == "Pretrained" and init.get("checkpoint"):
        paths.append(("backbone checkpoint (model.backbone.init_cfg.checkpoint)", Path(init["checkpoint"])))
    if cfg.get("load_from"):
        paths.append(("checkpoint", Path(cfg.load_from)))
    for what, path in paths:
        if not path.exists():
            raise InputNotFoundError(f"{what} {path} does not exist")


@contextmanager
def trusted_checkpoint_loading() -> Iterator[None]:
    """Let torch.load unpickle fully (weights_only=False) inside this block only.

    mmengine's checkpoints carry its message hub (HistoryBuffer objects holding numpy arrays), which
    torch >= 2.6's default ``weights_only=True`` refuses; mmengine 0.10.7 does not pass the flag. The
    block wraps just the runner's load of the checkpoint the user named (--resume / test checkpoint).
    """
    import torch

    original = torch.load

    def load(*args, **kwargs):
        kwargs.setdefault("weights_only", False)
        return original(*args, **kwargs)

    torch.load = load
    try:
        yield
    finally:
        torch.load = original


def run(cfg, train: bool) -> Optional[dict]:
    """Build the Runner and train (resuming when asked) or test (returns the test metrics)."""
    from mmengine.runner import Runner

    runner = Runner.from_cfg(cfg)
    if train:
        if cfg.get("resume"):
            with trusted_checkpoint_loading():
                runner.load_or_resume()
        runner.train()
        return None
    with trusted_checkpoint_loading():
        runner.load_or_resume()
    return runner.test()


def last_metrics(work_dir, key: str) -> dict:
    """The last evaluation holding ``key`` in the JSON logs mmengine's Runner writes to ``work_dir``
    (``<run>/vis_data/scalars.json`` when training, ``<run>/<run>.json`` when testing)."""
    work_dir = Path(work_dir)
    paths = sorted(work_dir.glob("*/*.json")) + sorted(work_dir.glob("*/vis_data/scalars.json"))
    rows = [json.loads(line) for path in paths for line in path.read_text().splitlines() if line.strip()]
    rows = [row for row in rows if key in row]
    if not rows:
        raise KeyError(f"no {key} in the JSON logs under {work_dir}: did the evaluation run?")
    return rows[-1]


def main(description: str, train: bool, argv: Optional[List[str]] = None) -> Optional[dict]:
    """The whole of tools/{seg,det}_{train,test}.py."""
    args = parse_runner_args(description, train=train, argv=argv)
    cfg = build_config(args, train=train)
    check_inputs(cfg, train=train)
    return run(cfg, train=train)
