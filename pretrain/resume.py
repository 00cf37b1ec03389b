"""Resuming a run. The saved configuration is the run's identity: a new command line may change where
things are and how often things are reported, and extend the schedule (``--epochs``); any other
difference stops before work unless ``--resume-allow-change`` names it. Also the repairs a killed run
needs: the newest readable checkpoint when the last one is damaged and temporary checkpoint files
removed (the records are repaired by :mod:`.records`)."""
from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from . import checkpoint as ckpt
from . import records
from .config import flag, get_args_parser
from .distributed import DistInfo, all_gather_objects
from .errors import CheckpointError, ConfigError, InputNotFoundError

_logger = logging.getLogger("pretrain")

# Where the run's files are, how often it reports, how its data is read and where it runs: none of these
# changes the recipe (both data pipelines draw the same augmentation parameters, their JPEG decoders
# differ slightly; compiling and memory layout change rounding only); each change is logged. ``epochs``
# extends or shortens the schedule (the scheduler is rebuilt for it).
MAY_CHANGE = frozenset({"epochs", "output_dir", "config", "data_path", "workers", "pin_memory", "print_freq",
                        "save_every", "eval_every", "eval_batch_size", "tensorboard", "max_bad_fraction", "benchmark",
                        "benchmark_steps", "benchmark_warmup", "device", "data_pipeline", "compile", "compile_mode",
                        "compile_backend", "channels_last", "dataset_download"})
# How this command line asked to resume: not part of the run.
NOT_COMPARED = frozenset({"resume", "resume_allow_change"})
# The weights only fit the model they were trained as.
NEVER_CHANGE = frozenset({"model", "model_kwargs", "num_classes", "input_size"})
# Not an option: processes x --batch-size x --grad-accum-steps, which scales the lr; may change with either.
GLOBAL_BATCH = "global_batch"


@dataclass
class ConfigDiff:
    applied: Dict[str, Tuple[Any, Any]] = field(default_factory=dict)  # may change: applied and logged
    allowed: Dict[str, Tuple[Any, Any]] = field(default_factory=dict)  # named by --resume-allow-change

    @property
    def changes(self) -> Dict[str, List[Any]]:
        return {key: [old, new] for key, (old, new) in {**self.applied, **self.allowed}.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def compare_configs(saved: Dict, config: argparse.Namespace, saved_world: int, world_size: int) -> ConfigDiff:
    """How ``config`` differs from the ``saved`` configuration of the run it resumes; one
    :class:`ConfigError` listing every difference that is neither free to change nor allowed."""
    defaults = get_args_parser()
    new = {key: _plain(value) for key, value in vars(config).items()}
    old = {key: _plain(value) for key, value in saved.items()}
    for key in set(new) - set(old):  # options added to the suite after the checkpoint was written
        old[key] = _plain(defaults.get_default(key))
    old[GLOBAL_BATCH] = old["batch_size"] * saved_world * old["grad_accum_steps"]
    new[GLOBAL_BATCH] = new["batch_size"] * world_size * new["grad_accum_steps"]
    allowed = {key.replace("-", "_") for key in config.resume_allow_change}
    unknown = sorted(allowed - set(new))
    if unknown:
        raise ConfigError(f"--resume-allow-change {' '.join(unknown)}: no such option(s)")
    diff, refused, fixed = ConfigDiff(), [], []
    for key in sorted(new):
        if key not in old or key in NOT_COMPARED or old[key] == new[key]:
            continue
        change = (old[key], new[key])
        if key in MAY_CHANGE:
            diff.applied[key] = change
        elif key in NEVER_CHANGE:
            fixed.append(f"{flag(key)}: {old[key]!r} -> {new[key]!r}")
        elif key in allowed or (key == GLOBAL_BATCH and allowed & {"batch_size", "grad_accum_steps"}):
            diff.allowed[key] = change
        else:
            name = flag(key) if key != GLOBAL_BATCH else "global batch (processes x --batch-size x --grad-accum-steps)"
            refused.append((key, f"{name}: {old[key]!r} -> {new[key]!r}"))
    if fixed:
        raise ConfigError("the checkpoint's weights belong to another model: " + "; ".join(fixed)
                          + ". Start a new run (--output-dir elsewhere), or fine-tune from an export")
    if refused:
        raise ConfigError("the command line differs from the run it resumes: "
                          + "; ".join(text for _, text in refused) + ". If that is intended, pass "
                          f"--resume-allow-change {' '.join(key for key, _ in refused)}; otherwise resume with the "
                          f"run's own settings (its config.yaml)")
    return diff


@dataclass
class Resumption:
    """The checkpoint a run continues from, how the command line differs from it, and the run's
    history of resumes, this one last."""

    path: Path
    state: Dict
    diff: ConfigDiff
    history: List[Dict]


def plan_resume(config: argparse.Namespace, output_dir: Path, dist_info: DistInfo) -> Optional[Resumption]:
    """Before anything is built: rank 0 chooses the checkpoint (every process then resumes the same
    one), the output folder must not hold another run, and the command line is compared with the
    checkpoint's configuration."""
    found = find_checkpoint(config.resume, output_dir) if dist_info.is_main else None
    chosen = all_gather_objects(str(found[0]) if found else "")[0]
    if chosen and not dist_info.is_main:
        found = (Path(chosen), ckpt.read_training_checkpoint(Path(chosen)))
    if found is None or found[0].resolve().parent != Path(output_dir).resolve():
        check_fresh_start(output_dir, config.resume)
    if found is None:
        return None
    path, state = found
    diff = compare_configs(state["config"], config, len(state["rng"]), dist_info.world_size)
    entry = {"epoch": state["epoch"] + 1, "from": str(path), "changes": diff.changes}
    return Resumption(path, state, diff, state.get("config_history", []) + [entry])


def data_identity(train_set) -> Dict:
    """What makes two training sets the same run's: the classes in label order and the image count."""
    mapping = train_set.class_to_idx
    return {"classes": sorted(mapping, key=mapping.get), "train_images": len(train_set)}


def check_same_data(state: Dict, train_set, allowed: List[str]) -> None:
    """--data-path may move (a copy on local disk); the data it names must be the resumed run's."""
    saved, now = state.get("data"), data_identity(train_set)
    if not saved or saved == now or "data_path" in {key.replace("-", "_") for key in allowed}:
        return
    changes = []
    if saved["train_images"] != now["train_images"]:
        changes.append(f"{saved['train_images']} -> {now['train_images']} training images")
    if saved["classes"] != now["classes"]:
        changed = [f"{old}->{new}" for old, new in zip(saved["classes"], now["classes"]) if old != new][:3]
        changes.append(f"classes {len(saved['classes'])} -> {len(now['classes'])}"
                       + (f" (e.g. {', '.join(changed)})" if changed else ""))
    raise ConfigError(f"--data-path names other data than the resumed run's: {'; '.join(changes)}. If that is "
                      f"intended, pass --resume-allow-change data_path")


def find_checkpoint(resume: str, output_dir: Path) -> Optional[Tuple[Path, Dict]]:
    """The checkpoint to resume from and its contents. '' -> None; 'auto' -> OUTPUT_DIR's
    checkpoint_last.pth, or, when that is damaged, the newest readable checkpoint beside it (None in
    a folder without any: a fresh start, logged); else the given file, which must be readable."""
    if not resume:
        return None
    if resume != "auto":
        if not Path(resume).is_file():
            raise InputNotFoundError(f"--resume {resume}: no such checkpoint (or 'auto' for the output folder's last)")
        return Path(resume), ckpt.read_training_checkpoint(Path(resume))
    output_dir = Path(output_dir)
    last, best = output_dir / ckpt.LAST, output_dir / ckpt.BEST
    damaged: List[str] = []

    def readable(path: Path) -> Optional[Dict]:
        try:
            return ckpt.read_training_checkpoint(path) if path.is_file() else None
        except CheckpointError as error:
            damaged.append(str(error))
            return None

    found: Optional[Tuple[Path, Dict]] = None
    for path in [last, *sorted(output_dir.glob("checkpoint_epoch*.pth"), reverse=True)]:  # newest first
        state = readable(path)
        if state is not None:
            found = (path, state)
            break
    if found is None or found[0] != last:  # the best one may be newer than every readable epoch file
        state = readable(best)
        if state is not None and (found is None or state["epoch"] > found[1]["epoch"]):
            found = (best, state)
    for error in damaged:
        _logger.warning("--resume auto: skipped a damaged checkpoint: %s", error)
    if found is None:
        if damaged:
            raise CheckpointError(f"--resume auto: no readable checkpoint in {output_dir} ({len(damaged)} damaged)")
        _logger.info("--resume auto: no checkpoint in %s yet: starting a fresh run", output_dir)
        return None
    if found[0] != last:
        _logger.warning("--resume auto: resuming from %s (epoch %d), the newest readable checkpoint",
                        found[0].name, found[1]["epoch"] + 1)
    return found


def check_fresh_start(output_dir: Path, resume: str = "") -> None:
    """A new run (or one resumed from a checkpoint elsewhere) must not write over another run's
    checkpoints and log."""
    existing = [name for name in (ckpt.LAST, records.LOG) if (Path(output_dir) / name).exists()]
    if not existing:
        return
    if resume == "auto":
        raise ConfigError(f"--output-dir {output_dir} holds {', '.join(existing)} but no readable checkpoint to resume: "
                          f"move them away, or choose another --output-dir")
    advice = "pass --resume auto to continue it" if not resume else "resume it into an empty --output-dir"
    raise ConfigError(f"--output-dir {output_dir} already holds a run ({', '.join(existing)}): {advice}, or choose "
                      f"another --output-dir")


def remove_stale_temporaries(output_dir: Path) -> None:
    """Temporary files of checkpoint writes a killed process never finished (see ``save_atomic``)."""
    stale = [path for path in Path(output_dir).glob(".*.pth.tmp*") if path.is_file()]
    size = sum(path.stat().st_size for path in stale)
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        _logger.info("removed %d unfinished checkpoint write(s) of a killed run (%.1f MB)", len(stale), size / 2**20)


def describe(diff: ConfigDiff, path: Path, state: Dict) -> None:
    _logger.info("resuming %s (completed epoch %d)", path, state["epoch"])
    for key, (old, new) in diff.applied.items():
        if key == "epochs":
            _logger.info("schedule %s from %d to %d epochs: the lr schedule is rebuilt for %d epochs and continues "
                         "after epoch %d", "extended" if new > old else "shortened", old, new, new, state["epoch"])
        else:
            _logger.info("%s changed: %r -> %r", flag(key), old, new)
    for key, (old, new) in diff.allowed.items():
        _logger.warning("%s changed by --resume-allow-change: %r -> %r (recorded in log.jsonl and the checkpoint)",
                        flag(key) if key != GLOBAL_BATCH else "global batch", old, new)
