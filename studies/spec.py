"""A study file, read and checked in full before any run starts; the grid expanded into named settings.

Every problem stops the study with one :class:`~pretrain.errors.UserError` naming the key, the value
and what was expected. Each setting's training configuration is resolved exactly as
``tools/train.py`` will resolve it (its YAML with ``_base_``, then the overrides as flags), with every
check of pretraining's own, so that a bad value fails here and not in the tenth run. Relative paths
(configs, the output root, the data) are taken from the folder the study is started in, as
tools/train.py takes them.
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Tuple

import yaml

from pretrain.config import KeyValueAction, flag, get_args_parser, parse_args
from pretrain.data import split_location
from pretrain.errors import ConfigError, InputNotFoundError, UserError

from .runs import Run

TOP_LEVEL = ("name", "output", "seeds", "reference", "overrides", "settings", "config", "grid", "executor")
SETTING_KEYS = ("name", "config", "overrides")
# options the study sets itself for every run
RESERVED = {"config": "settings' config", "seed": "seeds", "output_dir": "output", "resume": "the study (--resume auto)",
            "benchmark": "nothing: a study trains and compares top-1"}
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=,+-]*")
SUBMITIT_CLUSTERS = ("slurm", "local", "debug")



def _is_int(value: Any, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


# executor options: (check, what the value must be)
LOCAL_OPTIONS = {"gpus": (lambda v: v in ("auto", "none") or (isinstance(v, list) and all(
    _is_int(gpu, 0) or _is_text(gpu) for gpu in v)), "auto, none, or a list of GPU ids"),
                 "runs_per_gpu": (lambda v: _is_int(v, 1), "an integer >= 1 (small models share a GPU)")}
SLURM_OPTIONS = {
    "cluster": (lambda v: v in SUBMITIT_CLUSTERS, f"one of {', '.join(SUBMITIT_CLUSTERS)} (submitit's; local and "
                                                  f"debug try the study without a cluster)"),
    "time": (lambda v: _is_int(v, 1), "minutes per run, an integer >= 1"),
    "gpus_per_node": (lambda v: _is_int(v, 0), "an integer >= 0"),
    "cpus_per_task": (lambda v: _is_int(v, 1), "an integer >= 1"),
    "array_parallelism": (lambda v: _is_int(v, 1), "an integer >= 1 (runs at once)"),
    "mem_gb": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0, "a number of GB > 0"),
    **{key: (_is_text, "a non-empty string") for key in ("partition", "account", "qos", "constraint", "job_name")},
    "setup": (lambda v: isinstance(v, list) and all(isinstance(line, str) for line in v),
              "a list of shell lines (run before each run, e.g. module load)"),
    "additional_parameters": (lambda v: isinstance(v, dict), "a mapping of sbatch option: value"),
}
EXECUTORS = {"local": LOCAL_OPTIONS, "slurm": SLURM_OPTIONS}


@dataclass(frozen=True)
class Setting:
    name: str
    config: str  # as the study file gives it
    overrides: Dict[str, Any]  # the setting's own, as the study file gives them
    flags: Tuple[str, ...]  # the common overrides and its own, as tools/train.py flags
    epochs: int
    device: str


@dataclass(frozen=True)
class Executor:
    name: str
    options: Dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Study:
    name: str
    file: Path
    root: Path
    settings: Tuple[Setting, ...]
    seeds: Tuple[int, ...]
    reference: str
    overrides: Dict[str, Any]  # common to every setting
    executor: Executor
    workdir: Path  # where the runs start, so that the data path and configs mean what they meant here

    def setting(self, name: str) -> Setting:
        return next(setting for setting in self.settings if setting.name == name)

    def runs(self) -> List[Run]:
        """Every (setting, seed) pair, setting by setting."""
        return [Run(setting.name, seed, self.root / setting.name / f"seed_{seed}", setting.epochs,
                    ("--config", str(Path(setting.config).resolve()), "--seed", str(seed),
                     "--output-dir", str(self.root / setting.name / f"seed_{seed}"), "--resume", "auto",
                     *setting.flags))
                for setting in self.settings for seed in self.seeds]


class _Reader:
    """Checks of one study file; every error names the file and the key."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.actions = {action.dest: action for action in get_args_parser()._actions  # timm's aliases: flags only
                        if action.dest != "help" and action.default is not argparse.SUPPRESS}

    def fail(self, where: str, message: str) -> ConfigError:
        return ConfigError(f"{self.file}: {where}: {message}")

    def expect(self, ok: bool, where: str, value: Any, what: str) -> None:
        if not ok:
            raise self.fail(where, f"{value!r} is not {what}")

    def unknown_keys(self, mapping: Dict, allowed: List[str], where: str) -> None:
        for key in mapping:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, 1)
                raise self.fail(f"{where}{key}", "unknown key" + (f" (did you mean {close[0]}?)" if close else "")
                                + f"; expected one of {', '.join(allowed)}")

    def flags(self, overrides: Any, where: str) -> List[str]:
        """Overrides as tools/train.py's flags; the keys are its options with '_' for '-'."""
        self.expect(isinstance(overrides, dict), where, overrides, "a mapping of tools/train.py option: value")
        arguments: List[str] = []
        for key, value in overrides.items():
            if key in RESERVED:
                raise self.fail(f"{where}.{key}", f"set by the study's {RESERVED[key]}, not as an override")
            if key not in self.actions:
                close = difflib.get_close_matches(str(key), list(self.actions), 1)
                raise self.fail(f"{where}.{key}", "not an option of tools/train.py" + (
                    f" (did you mean {close[0]}?)" if close else "") + "; options are its flags with '_' for '-' "
                                                                       "(python tools/train.py --help)")
            try:
                arguments += _as_flag(key, value, self.actions[key])
            except ValueError as error:
                raise self.fail(f"{where}.{key}", str(error)) from None
        return arguments

    def path(self, value: Any, where: str) -> str:
        self.expect(isinstance(value, str) and value != "", where, value, "a path")
        if not Path(value).is_file():
            raise InputNotFoundError(f"{self.file}: {where}: {value!r} does not exist (relative paths are taken "
                                     f"from the folder the study is started in, {Path.cwd()})")
        return value


def _as_flag(key: str, value: Any, action: argparse.Action) -> List[str]:
    """The command-line words that give ``key`` the YAML ``value``; argparse then checks the value
    itself, as it checks a user's flags."""
    name = flag(key)
    if isinstance(action, argparse.BooleanOptionalAction):
        if not isinstance(value, bool):
            raise ValueError(f"{value!r} is not true or false")
        return [name if value else "--no-" + name[2:]]
    if isinstance(action, argparse._StoreTrueAction):
        if value is not True:
            raise ValueError(f"{value!r}: this option can only be switched on (true), or left out")
        return [name]
    if isinstance(action, KeyValueAction):
        if not isinstance(value, dict):
            raise ValueError(f"{value!r} is not a mapping of keyword: value")
        # strings as written, so that the flag's literal_eval reads them as it reads the command line
        return [name, *(f"{k}={v}" if isinstance(v, str) else f"{k}={v!r}" for k, v in value.items())]
    if value is None:
        raise ValueError("null cannot be given as a flag: leave the key out to keep the config's value")
    if isinstance(action.nargs, int) or action.nargs in ("+", "*"):
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(item, (str, int, float)) and not isinstance(item, bool) for item in items):
            raise ValueError(f"{value!r} is not a list of values")
        return [name, *map(str, items)]
    if isinstance(value, (bool, list, dict)):
        raise ValueError(f"{value!r} is not a single value")
    return [name, str(value)]


def _resolve(arguments: List[str]) -> argparse.Namespace:
    """tools/train.py's own resolution and checks. argparse reports a bad flag value by printing its
    usage and exiting: its last line, the message, becomes the error."""
    printed = io.StringIO()
    try:
        with contextlib.redirect_stderr(printed):
            return parse_args(arguments)
    except SystemExit:
        message = printed.getvalue().strip().splitlines()[-1]
        raise ConfigError(message.split(": error: ", 1)[-1]) from None


def _point_name(point: Dict[str, Any]) -> str:
    def shown(value: Any) -> str:
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, list):
            return "-".join(map(shown, value))
        if isinstance(value, dict):
            return "+".join(f"{k}-{shown(v)}" for k, v in value.items())
        return str(value) if value != "" else "empty"

    return ",".join(f"{key}={re.sub(r'[^A-Za-z0-9_.+-]', '_', shown(value))}" for key, value in point.items())


class _Entry(NamedTuple):
    name: Any
    config: str
    overrides: Any
    where: str  # the key it is written under, for errors
    overrides_where: str


def _entries(reader: _Reader, raw: Dict) -> List[_Entry]:
    """The settings, from ``settings:`` or from ``config:`` + ``grid:``."""
    if ("settings" in raw) == ("grid" in raw or "config" in raw):
        raise reader.fail("settings", "give either settings: (a list of configs) or config: with grid: (one config "
                                      "and lists of values to combine)")
    if "settings" in raw:
        entries = raw["settings"]
        reader.expect(isinstance(entries, list) and entries != [], "settings", entries,
                      "a non-empty list of config paths or of {name, config, overrides}")
        found = []
        for index, entry in enumerate(entries):
            where = f"settings[{index}]"
            if isinstance(entry, str):
                entry = {"config": entry}
            reader.expect(isinstance(entry, dict), where, entry, "a config path or a mapping {name, config, overrides}")
            reader.unknown_keys(entry, list(SETTING_KEYS), f"{where}.")
            if "config" not in entry:
                raise reader.fail(where, "config: is missing (the pretraining YAML of this setting)")
            config = reader.path(entry["config"], f"{where}.config")
            found.append(_Entry(entry.get("name", Path(config).stem), config, entry.get("overrides", {}), where,
                                f"{where}.overrides"))
        return found
    if "config" not in raw or "grid" not in raw:
        raise reader.fail("grid" if "config" in raw else "config", "a grid needs both config: and grid:")
    config = reader.path(raw["config"], "config")
    grid = raw["grid"]
    reader.expect(isinstance(grid, dict) and grid != {}, "grid", grid, "a mapping of option: list of values")
    for key, values in grid.items():
        reader.expect(isinstance(values, list) and values != [], f"grid.{key}", values, "a non-empty list of values")
    return [_Entry(_point_name(point), config, point, "grid", "grid")
            for point in (dict(zip(grid, values)) for values in itertools.product(*grid.values()))]


def _seeds(reader: _Reader, raw: Any) -> Tuple[int, ...]:
    if _is_int(raw, 1):
        return tuple(range(raw))
    reader.expect(isinstance(raw, list) and raw != [] and all(_is_int(seed, 0) for seed in raw), "seeds", raw,
                  "a count >= 1 or a non-empty list of integer seeds >= 0")
    reader.expect(len(set(raw)) == len(raw), "seeds", raw, "a list without repeats")
    return tuple(raw)


def _executor(reader: _Reader, raw: Any) -> Executor:
    if isinstance(raw, str):
        raw = {"name": raw}
    reader.expect(isinstance(raw, dict) and raw.get("name") in EXECUTORS, "executor", raw,
                  f"a mapping with name: {' or '.join(EXECUTORS)} and that executor's options")
    allowed = EXECUTORS[raw["name"]]
    reader.unknown_keys(raw, ["name", *allowed], "executor.")
    options = {key: value for key, value in raw.items() if key != "name"}
    for key, value in options.items():
        check, what = allowed[key]
        reader.expect(check(value), f"executor.{key}", value, what)
    if raw["name"] == "slurm":
        options.setdefault("cluster", "slurm")
        options.setdefault("gpus_per_node", 1)
        if "time" not in options:
            raise reader.fail("executor.time", "required for slurm: minutes per run (sbatch --time)")
    return Executor(raw["name"], options)


def load_study(path: Path, seeds: Any = None, output: Any = None, overrides: Dict[str, Any] = None) -> Study:
    """The study in ``path``, every key and every setting's training configuration checked. ``seeds``,
    ``output`` and ``overrides`` (merged over the file's common overrides) come from the command line."""
    file = Path(path)
    if not file.is_file():
        raise InputNotFoundError(f"study file {str(file)!r} does not exist")
    try:
        raw = yaml.safe_load(file.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{file} is not valid YAML: {' '.join(str(error).split())}") from None
    reader = _Reader(file)
    reader.expect(isinstance(raw, dict), "top level", raw, "a mapping (see docs/studies.md)")
    reader.unknown_keys(raw, list(TOP_LEVEL), "")
    raw.update({key: value for key, value in (("seeds", seeds), ("output", output)) if value is not None})
    if overrides:
        reader.expect(isinstance(raw.get("overrides", {}), dict), "overrides", raw.get("overrides"),
                      "a mapping of tools/train.py option: value")
        raw["overrides"] = {**raw.get("overrides", {}), **overrides}
    name = raw.get("name", file.stem)
    reader.expect(isinstance(name, str) and NAME.fullmatch(name) is not None, "name", name,
                  "a name of letters, digits and _ . = , + -")
    output = raw.get("output", f"output/studies/{name}")
    reader.expect(isinstance(output, str) and output != "", "output", output, "a folder path")
    root = Path(output).resolve()
    if root.exists() and not root.is_dir():
        raise reader.fail("output", f"{output!r} exists and is not a folder")
    if "seeds" not in raw:
        raise reader.fail("seeds", "missing: a count (3 means seeds 0, 1, 2) or a list of seeds")
    seeds = _seeds(reader, raw["seeds"])
    common = raw.get("overrides", {})
    common_flags = reader.flags(common, "overrides")
    executor = _executor(reader, raw.get("executor", "local"))

    settings: List[Setting] = []
    for entry in _entries(reader, raw):
        if not isinstance(entry.name, str) or NAME.fullmatch(entry.name) is None:
            raise reader.fail(entry.where, f"name {entry.name!r} is not a folder name of letters, digits and _ . = , + -")
        if any(setting.name == entry.name for setting in settings):
            raise reader.fail(entry.where, f"{entry.name!r} names two settings; " + (
                "give each its own name:" if entry.where != "grid" else "use settings: to name them"))
        flags = common_flags + reader.flags(entry.overrides, entry.overrides_where)
        resolved = _resolved_config(reader, entry.name, entry.config, flags)
        settings.append(Setting(entry.name, entry.config, entry.overrides, tuple(flags), resolved.epochs,
                                resolved.device))

    reference = raw.get("reference", settings[0].name)
    if reference not in [setting.name for setting in settings]:
        raise reader.fail("reference", f"{reference!r} is not a setting; settings are "
                                       f"{', '.join(setting.name for setting in settings)}")
    return Study(name, file, root, tuple(settings), seeds, reference, common, executor, Path.cwd())


def _resolved_config(reader: _Reader, name: str, config: str, flags: List[str]) -> argparse.Namespace:
    """The configuration tools/train.py will run (the seed aside), with its data checked."""
    try:
        resolved = _resolve(["--config", config, *flags])
        if not resolved.data_path:
            raise ConfigError("no data: set overrides: {data_path: ...} (tools/train.py --data-path), or pass "
                              "--set data_path=PATH")
        if not resolved.dataset:  # a torch/NAME dataset is checked by torchvision when its run opens it
            for split in (resolved.train_split, resolved.val_split):
                split_location(resolved.data_path, split)
    except UserError as error:
        raise type(error)(f"{reader.file}: setting {name!r}: {error}") from None
    return resolved


def describe(study: Study) -> str:
    """The study in a few lines, for the console."""
    lines = [f"study {study.name}: {len(study.settings)} setting(s) x {len(study.seeds)} seed(s) "
             f"({', '.join(map(str, study.seeds))}) in {study.root}; reference {study.reference}",
             f"  every run: {json.dumps(study.overrides)}"]
    lines += [f"  {setting.name}: {setting.config} {json.dumps(setting.overrides)}" for setting in study.settings]
    return "\n".join(lines)
