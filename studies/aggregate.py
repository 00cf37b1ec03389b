"""A study's numbers: per setting the mean, sd and 95 % t-interval over seeds of the final and the
best validation top-1, and the difference to the reference setting paired by seed; written as
ROOT/study.md, study.csv, study.json and study_top1.png (the curves, mean and band per epoch).

Only finished runs count. Runs that are missing or unfinished are listed in every output, never
dropped silently; a setting with one counted seed has a mean but no interval.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import matplotlib
import numpy as np
from scipy import stats

from pretrain.plots import save_figure

from .runs import Run, progress
from .spec import Study

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

CONFIDENCE = 0.95
METRICS = {"final_top1": "final top-1", "best_top1": "best top-1"}
FILES = {"markdown": "study.md", "csv": "study.csv", "json": "study.json", "curves": "study_top1.png"}


@dataclass(frozen=True)
class Estimate:
    """Mean over n values with the t-interval at CONFIDENCE; sd and interval are None below 2 values."""
    n: int
    mean: Optional[float]
    sd: Optional[float]
    low: Optional[float]
    high: Optional[float]

    @property
    def excludes_zero(self) -> Optional[bool]:
        return None if self.low is None else bool(self.low > 0 or self.high < 0)


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
    """mean +- t_{(1+confidence)/2, n-1} * sd / sqrt(n), sd with n - 1 degrees of freedom."""
    n = len(values)
    if n == 0:
        return Estimate(0, None, None, None, None)
    mean = float(np.mean(values))
    if n == 1:
        return Estimate(1, mean, None, None, None)
    sd = float(np.std(values, ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * sd / math.sqrt(n)
    return Estimate(n, mean, sd, mean - half, mean + half)


def paired_difference(values: Dict[int, float], reference: Dict[int, float],
                      confidence: float = CONFIDENCE) -> Tuple[Estimate, List[int]]:
    """The t-interval of value - reference over the seeds both have, and those seeds."""
    seeds = sorted(set(values) & set(reference))
    return t_interval([values[seed] - reference[seed] for seed in seeds], confidence), seeds


@dataclass
class SettingResult:
    name: str
    values: Dict[str, Dict[int, float]]  # metric -> seed -> top-1 of the finished runs
    curves: Dict[int, List[Tuple[int, float]]]  # seed -> (epoch, val top-1) of the finished runs
    not_counted: List[Tuple[Run, str]]  # with the reason

    def estimate(self, metric: str) -> Estimate:
        return t_interval(list(self.values[metric].values()))


def collect(study: Study) -> List[SettingResult]:
    results = {setting.name: SettingResult(setting.name, {metric: {} for metric in METRICS}, {}, [])
               for setting in study.settings}
    for run in study.runs():
        result, reached = results[run.setting], progress(run)
        curve = [(record["epoch"], record["val_top1"]) for record in reached.records if "val_top1" in record]
        if reached.state != "finished" or "val_top1" not in reached.records[-1]:
            why = reached.describe(run.epochs) if reached.state != "finished" else "finished without val_top1"
            result.not_counted.append((run, why))
            continue
        result.values["final_top1"][run.seed] = reached.records[-1]["val_top1"]
        result.values["best_top1"][run.seed] = max(top1 for _, top1 in curve)
        result.curves[run.seed] = curve
    return [results[setting.name] for setting in study.settings]


def summarize(study: Study, results: List[SettingResult]) -> Dict:
    """Everything the outputs show, as plain data (study.json)."""
    reference = next(result for result in results if result.name == study.reference)
    settings = []
    for result in results:
        setting = study.setting(result.name)
        entry = {"name": result.name, "config": setting.config, "overrides": setting.overrides,
                 "epochs": setting.epochs}
        for metric in METRICS:
            entry[metric] = {**asdict(result.estimate(metric)),
                             "values": {str(seed): value for seed, value in sorted(result.values[metric].items())}}
            if result.name != study.reference:
                difference, seeds = paired_difference(result.values[metric], reference.values[metric])
                entry[f"{metric}_difference"] = {**asdict(difference), "excludes_zero": difference.excludes_zero,
                                                 "seeds": seeds}
        entry["not_counted"] = [{"seed": run.seed, "folder": str(run.folder), "why": why}
                                for run, why in result.not_counted]
        settings.append(entry)
    return {"study": study.name, "root": str(study.root), "reference": study.reference, "confidence": CONFIDENCE,
            "metric": "val_top1 (%)", "seeds": list(study.seeds), "overrides": study.overrides, "settings": settings}


def _number(value: Optional[float], signed: bool = False) -> str:
    return "-" if value is None else (f"{value:+.2f}" if signed else f"{value:.2f}")


def _interval(estimate: Dict, signed: bool = False) -> str:
    if estimate["n"] == 0:
        return "-"
    if estimate["low"] is None:
        return "no interval (1 seed)"
    return f"[{_number(estimate['low'], signed)}, {_number(estimate['high'], signed)}]"


def _verdict(difference: Dict) -> str:
    if difference["excludes_zero"] is None:
        return f"undecided: {difference['n']} paired seed{'s' if difference['n'] != 1 else ''}, no interval"
    return "**beyond the noise** (excludes 0)" if difference["excludes_zero"] else "inside the noise (contains 0)"


def write_markdown(summary: Dict, path: Path, curves: Optional[Path]) -> None:
    level = f"{summary['confidence']:.0%}".replace("%", " %")
    settings = summary["settings"]
    counted = sum(setting["final_top1"]["n"] for setting in settings)
    lines = [f"# Study {summary['study']}: validation top-1 over seeds", "",
             f"{len(settings)} setting(s) x {len(summary['seeds'])} seed(s) ({', '.join(map(str, summary['seeds']))}): "
             f"{counted} of {len(settings) * len(summary['seeds'])} runs finished and counted. Top-1 in %; "
             f"n = counted seeds; intervals are {level} t-intervals over seeds (mean +- t * sd / sqrt(n)). "
             f"Final = top-1 after the last epoch, best = the highest top-1 of any evaluated epoch.", "",
             f"Every run: `{json.dumps(summary['overrides'])}`.", "",
             "| setting | config | its own overrides | epochs |", "|---|---|---|---|"]
    lines += [f"| {setting['name']} | {setting['config']} | `{json.dumps(setting['overrides'])}` | {setting['epochs']} |"
              for setting in settings]
    lines += ["", "## Top-1 per setting", "",
             "| setting | n | final: mean +- sd | final: interval | best: mean +- sd | best: interval |",
             "|---|---|---|---|---|---|"]
    for setting in settings:
        cells = [setting["name"] + (" (reference)" if setting["name"] == summary["reference"] else ""),
                 str(setting["final_top1"]["n"])]
        for metric in METRICS:
            estimate = setting[metric]
            sd = f" +- {_number(estimate['sd'])}" if estimate["sd"] is not None else ""
            cells += [_number(estimate["mean"]) + sd, _interval(estimate)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"## Difference to the reference, {summary['reference']}, paired by seed", "",
              "Setting minus reference, in percentage points, over the seeds both finished. A difference whose "
              "interval contains 0 is inside the noise of these seeds: no evidence either way.", "",
              "| setting | paired seeds | final: difference | final: interval | final: verdict | best: difference | "
              "best: interval | best: verdict |",
              "|---|---|---|---|---|---|---|---|"]
    for setting in settings:
        if setting["name"] == summary["reference"]:
            continue
        cells = [setting["name"], str(setting["final_top1_difference"]["n"])]
        for metric in METRICS:
            difference = setting[f"{metric}_difference"]
            cells += [_number(difference["mean"], signed=True), _interval(difference, signed=True), _verdict(difference)]
        lines.append("| " + " | ".join(cells) + " |")
    compared = [setting for setting in settings if setting["name"] != summary["reference"]]
    if compared:
        lines.append("")
        for metric, label in METRICS.items():
            groups = {verdict: [setting["name"] for setting in compared
                                if setting[f"{metric}_difference"]["excludes_zero"] is value]
                      for verdict, value in (("beyond the noise", True), ("inside the noise", False),
                                             ("no interval yet", None))}
            lines.append(f"- {label}: " + "; ".join(f"{verdict}: {', '.join(names)}"
                                                    for verdict, names in groups.items() if names) + ".")
    not_counted = [(setting["name"], run) for setting in settings for run in setting["not_counted"]]
    lines += ["", "## Runs not counted", ""]
    if not_counted:
        lines += ["| setting | seed | state | folder |", "|---|---|---|---|"]
        lines += [f"| {name} | {run['seed']} | {run['why']} | {run['folder']} |" for name, run in not_counted]
    else:
        lines.append("None: every run finished.")
    lines += ["", "## Curves", ""]
    lines.append(f"![validation top-1 by epoch]({curves.name})\n\nMean over the finished seeds, band: the {level} "
                 f"t-interval per epoch (none with one seed)." if curves else "No finished run yet: no curves.")
    path.write_text("\n".join(lines) + "\n")


def write_csv(summary: Dict, path: Path) -> None:
    columns = ["setting", "reference", "n", "not_counted"]
    for metric in METRICS:
        columns += [f"{metric}_{key}" for key in ("mean", "sd", "ci_low", "ci_high")]
        columns += [f"{metric}_diff_{key}" for key in ("n", "mean", "sd", "ci_low", "ci_high", "excludes_zero")]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        for setting in summary["settings"]:
            row = {"setting": setting["name"], "reference": setting["name"] == summary["reference"],
                   "n": setting["final_top1"]["n"], "not_counted": len(setting["not_counted"])}
            for metric in METRICS:
                estimate = setting[metric]
                row.update({f"{metric}_mean": estimate["mean"], f"{metric}_sd": estimate["sd"],
                            f"{metric}_ci_low": estimate["low"], f"{metric}_ci_high": estimate["high"]})
                difference = setting.get(f"{metric}_difference")
                if difference is not None:
                    row.update({f"{metric}_diff_{key}": difference[name] for key, name in (
                        ("n", "n"), ("mean", "mean"), ("sd", "sd"), ("ci_low", "low"), ("ci_high", "high"),
                        ("excludes_zero", "excludes_zero"))})
            writer.writerow({key: "" if value is None else value for key, value in row.items()})


def plot_curves(results: List[SettingResult], path: Path) -> Optional[Path]:
    """Validation top-1 by epoch per setting: the mean over finished seeds and its per-epoch interval."""
    if not any(result.curves for result in results):
        return None
    figure, axis = plt.subplots(figsize=(7, 4.5), dpi=120)
    for result in results:
        by_epoch: Dict[int, List[float]] = {}
        for curve in result.curves.values():
            for epoch, top1 in curve:
                by_epoch.setdefault(epoch, []).append(top1)
        if not by_epoch:
            continue
        epochs = sorted(by_epoch)
        estimates = [t_interval(by_epoch[epoch]) for epoch in epochs]
        line, = axis.plot(epochs, [estimate.mean for estimate in estimates], marker=".",
                          label=f"{result.name} (n={len(result.curves)})")
        banded = [(epoch, estimate) for epoch, estimate in zip(epochs, estimates) if estimate.low is not None]
        if banded:
            axis.fill_between([epoch for epoch, _ in banded], [estimate.low for _, estimate in banded],
                              [estimate.high for _, estimate in banded], color=line.get_color(), alpha=0.2)
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("epoch")
    axis.set_ylabel("validation top-1 (%)")
    axis.set_title(f"mean over seeds, band: {CONFIDENCE:.0%} t-interval")
    return save_figure(figure, axis, path)


def aggregate(study: Study) -> Dict[str, Path]:
    """Read every run's log.jsonl and write the study's tables and curves into its root."""
    study.root.mkdir(parents=True, exist_ok=True)
    results = collect(study)
    summary = summarize(study, results)
    files = {kind: study.root / name for kind, name in FILES.items()}
    curves = plot_curves(results, files["curves"])
    if curves is None:
        files.pop("curves").unlink(missing_ok=True)  # an old picture would no longer match the tables
    write_markdown(summary, files["markdown"], curves)
    write_csv(summary, files["csv"])
    files["json"].write_text(json.dumps(summary, indent=2) + "\n")
    return files
