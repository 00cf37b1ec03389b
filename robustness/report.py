"""Report of a robustness comparison: report.md (Table 5 of the paper plus occlusion, ImageNet-R /
-Sketch / -V2 / -C), report.json, CSVs and PNG plots (occlusion curves per mode, reliability diagram
on the shifted set, ImageNet-C's corruption x severity errors per model and CE bars)."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Dict, List, Optional

from pretrain.plots import save_figure

from .corruptions import CORRUPTIONS, EXTRA_CORRUPTIONS, SEVERITIES

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

IMAGENET_TITLES = {"val": "ImageNet val", "shifted": "IN-A", "ood": "IN-O", "imagenet_r": "IN-R", "sketch": "IN-Sketch",
                   "v2": "IN-V2", "corruptions": "IN-C"}
SHIFTS = ("imagenet_r", "sketch", "v2", "corruptions")
MODE_TITLES = {"random": "Random patch dropping (fraction dropped)",
               "salient": "Salient patch dropping (lambda: attention mass dropped)",
               "non_salient": "Non-salient patch dropping (lambda: attention mass kept)"}


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def write_report(results: Dict[str, Dict], skipped: Dict[str, str], out: Path, notes: List[str],
                 titles: Optional[Dict[str, str]] = None) -> Dict[str, Path]:
    """``results[model][benchmark]`` ('val', 'shifted', 'ood', 'imagenet_r', 'sketch', 'v2', 'corruptions') as
    produced by robustness.evaluate;
    ``skipped[benchmark]`` says why a benchmark was not run; ``titles`` names the sets (ImageNet's by
    default). Returns the files written."""
    titles = titles or IMAGENET_TITLES
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "report.json", "md": out / "report.md", "table5": out / "table5.csv"}
    public = {name: {bench: {k: v for k, v in res.items() if k not in ("confidence", "correct")}
                     for bench, res in benchmarks.items()} for name, benchmarks in results.items()}
    files["json"].write_text(json.dumps({"models": public, "skipped": skipped, "notes": notes, "titles": titles},
                                        indent=2) + "\n")

    rows = []
    for name, bench in results.items():
        a, o, val = bench.get("shifted", {}), bench.get("ood", {}), bench.get("val", {})
        rows.append([name, val.get("top1"), a.get("top1"), a.get("calibration_error"), a.get("aurra"), o.get("aupr"),
                     o.get("aupr_in"), o.get("auroc"), o.get("fpr_at_95_tpr")])
    shifted, ood = titles["shifted"], titles["ood"]
    header = ["model", f"{titles['val']} top-1", f"{shifted} top-1", f"{shifted} calib. error (lower better)",
              f"{shifted} AURRA", f"{ood} AUPR", f"{ood} AUPR-In", f"{ood} AUROC", f"{ood} FPR@95TPR (lower better)"]
    with open(files["table5"], "w", newline="") as handle:
        csv.writer(handle).writerows([header] + rows)
    lines = ["# Robustness report", ""] + [f"- {note}" for note in notes]
    lines += [f"- {titles[bench]}: not run ({why})" for bench, why in skipped.items()]
    section = ("Natural adversarial and out-of-distribution examples" if titles == IMAGENET_TITLES
               else f"Shifted ({shifted}) and out-of-distribution ({ood}) examples")
    lines += ["", f"## {section} (paper Table 5; %)", "",
              "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([row[0]] + [_fmt(v) for v in row[1:]]) + " |" for row in rows]

    occlusion = {name: bench["val"]["occlusion"] for name, bench in results.items() if "val" in bench}
    if occlusion:
        files["occlusion_csv"] = out / "occlusion.csv"
        with open(files["occlusion_csv"], "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["model", "mode", "level", "top1"])
            for name, modes in occlusion.items():
                for mode, levels in modes.items():
                    for level, value in sorted(levels.items(), key=lambda kv: float(kv[0])):
                        writer.writerow([name, mode, level, f"{value:.3f}"])
        sources = {results[name]["val"].get("saliency") for name in occlusion}
        patches = ", ".join(f"{name} {results[name]['val'].get('patch_size')} px" for name in occlusion)
        random_cells = sorted({results[name]["val"].get("random_patch_size") for name in occlusion})
        lines += ["", f"## Occlusion ({titles['val']} top-1 %, patches zeroed before normalisation)", "",
                  f"Random dropping: {', '.join(f'{c} px' for c in random_cells)} patches. Salient / non-salient "
                  f"dropping: {', '.join(sorted(str(s) for s in sources))} saliency, on its cells ({patches})."]
        for mode in MODE_TITLES:
            present = [name for name in occlusion if mode in occlusion[name]]
            if not present:
                continue
            levels = sorted(occlusion[present[0]][mode], key=float)
            lines += ["", f"**{MODE_TITLES[mode]}**", "", "| model | " + " | ".join(levels) + " |",
                      "|---|" + "---|" * len(levels)]
            lines += [f"| {name} | " + " | ".join(_fmt(occlusion[name][mode][level]) for level in levels) + " |"
                      for name in present]
            files[f"plot_{mode}"] = _plot_occlusion(occlusion, mode, out / f"occlusion_{mode}.png")
            lines += ["", f"![{mode}]({files[f'plot_{mode}'].name})"]
    reliability = {name: bench["shifted"] for name, bench in results.items() if "shifted" in bench}
    if reliability:
        files["reliability"] = _plot_reliability(reliability, shifted, out / "reliability_shifted.png")
        lines += ["", f"## Reliability on {shifted}", "", f"![reliability]({files['reliability'].name})"]
    lines += _shifts_section(results, titles, out, files)
    corrupted = {name: bench["corruptions"] for name, bench in results.items() if "corruptions" in bench}
    if corrupted:
        lines += _corruptions_section(corrupted, titles["corruptions"], out, files)
    files["md"].write_text("\n".join(lines) + "\n")
    return files


def _shifts_section(results: Dict[str, Dict], titles: Dict[str, str], out: Path, files: Dict[str, Path]) -> List[str]:
    """ImageNet-R / -Sketch / -V2 top-1 and ImageNet-C's summary numbers, one row per model (shifts.csv)."""
    present = [key for key in SHIFTS if any(key in bench for bench in results.values())]
    if not present:
        return []
    header, rows = ["model"], [[name] for name in results]
    for key in present:
        if key == "corruptions":
            header += [f"{titles[key]} mean error (lower better)", f"{titles[key]} mCE (lower better)",
                       f"{titles[key]} relative mCE (lower better)"]
        else:
            header.append(f"{titles[key]} top-1")
        for row, bench in zip(rows, results.values()):
            result = bench.get(key, {})
            row += ([result.get("mean_error"), result.get("mce"), result.get("relative_mce")] if key == "corruptions"
                    else [result.get("top1")])
    files["shifts"] = out / "shifts.csv"
    with open(files["shifts"], "w", newline="") as handle:
        csv.writer(handle).writerows([header] + rows)
    lines = ["", "## Renditions, sketches, a new test set and corruptions (%)", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join([row[0]] + [_fmt(v) for v in row[1:]]) + " |" for row in rows]


def _corruptions_section(corrupted: Dict[str, Dict], title: str, out: Path, files: Dict[str, Path]) -> List[str]:
    """CE per corruption (the 15, then the extras apart), why an mCE is missing, the per-severity
    errors (imagenet_c_errors.csv), the CEs (imagenet_c_ce.csv) and the two plots."""
    files["corruption_errors"] = out / "imagenet_c_errors.csv"
    with open(files["corruption_errors"], "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", "corruption", "severity", "top1_error"])
        for name, result in corrupted.items():
            for corruption, errors in result["errors"].items():
                for severity, error in sorted(errors.items()):
                    writer.writerow([name, corruption, severity, f"{error:.3f}"])
    files["corruption_ce"] = out / "imagenet_c_ce.csv"
    with open(files["corruption_ce"], "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", "corruption", "kind", "severities", "ce", "relative_ce"])
        for name, result in corrupted.items():
            for corruption, ce in result["ce"].items():
                relative = result["relative_ce"][corruption]
                writer.writerow([name, corruption, "standard" if corruption in CORRUPTIONS else "extra",
                                 " ".join(str(s) for s in result["severities"][corruption]), f"{ce:.3f}",
                                 "" if relative is None else f"{relative:.3f}"])
    lines = ["", f"## {title}: corruption errors (CE %, AlexNet = 100; lower better)"]
    for kind, names in (("standard", CORRUPTIONS), ("extra", EXTRA_CORRUPTIONS)):
        shown = [c for c in names if any(c in result["ce"] for result in corrupted.values())]
        if not shown:
            continue
        lead = ["mCE", "relative mCE"] if kind == "standard" else []
        lines += ["", "**The 15 corruptions of mCE**" if kind == "standard" else "**The 4 extra corruptions (not in mCE)**",
                  "", "| model | " + " | ".join(lead + shown) + " |", "|---|" + "---|" * (len(lead) + len(shown))]
        for name, result in corrupted.items():
            values = ([result["mce"], result["relative_mce"]] if kind == "standard" else []) + \
                [result["ce"].get(c) for c in shown]
            lines.append(f"| {name} | " + " | ".join(_fmt(v) for v in values) + " |")
    missing = [f"- {name}: {result[key]}" for name, result in corrupted.items()
               for key in ("mce_missing", "relative_mce_missing")
               if result[key] and (key == "mce_missing" or not result["mce_missing"])]  # one reason per model
    lines += [""] + missing if missing else []
    files["corruption_heatmap"] = _plot_corruption_errors(corrupted, title, out / "imagenet_c_errors.png")
    files["corruption_bars"] = _plot_corruption_ce(corrupted, title, out / "imagenet_c_ce.png")
    return lines + ["", f"![errors per corruption and severity]({files['corruption_heatmap'].name})", "",
                    f"![CE per corruption and mCE]({files['corruption_bars'].name})"]


def _plot_corruption_errors(corrupted: Dict[str, Dict], title: str, path: Path) -> Path:
    """One heat map per model: top-1 error of each corruption (rows) at each severity (columns)."""
    names = [c for c in (*CORRUPTIONS, *EXTRA_CORRUPTIONS) if any(c in r["errors"] for r in corrupted.values())]
    figure, axes = plt.subplots(1, len(corrupted), figsize=(2.2 + 2.6 * len(corrupted), 1.4 + 0.32 * len(names)),
                                dpi=120, squeeze=False, sharey=True)
    for axis, (model, result) in zip(axes[0], corrupted.items()):
        grid = np.full((len(names), len(SEVERITIES)), np.nan)
        for row, corruption in enumerate(names):
            for severity, error in result["errors"].get(corruption, {}).items():
                grid[row, severity - 1] = error
        image = axis.imshow(np.ma.masked_invalid(grid), cmap="magma_r", vmin=0, vmax=100, aspect="auto")
        for (row, column), error in np.ndenumerate(grid):
            if not np.isnan(error):
                axis.text(column, row, f"{error:.0f}", ha="center", va="center", fontsize=6,
                          color="white" if error > 60 else "black")
        axis.set_xticks(range(len(SEVERITIES)), [str(s) for s in SEVERITIES])
        axis.set_yticks(range(len(names)), names, fontsize=7)  # shown on the first panel only (sharey)
        axis.set_xlabel("severity")
        axis.set_title(model, fontsize=8)
    figure.colorbar(image, ax=axes[0].tolist(), label="top-1 error (%)", shrink=0.8)
    figure.suptitle(f"{title} top-1 error", fontsize=9)
    figure.savefig(path, bbox_inches="tight")
    plt.close(figure)
    return path


def _plot_corruption_ce(corrupted: Dict[str, Dict], title: str, path: Path) -> Path:
    """Grouped bars: each model's CE per corruption, its mCE after the 15 where all were evaluated,
    then the extras."""
    standard = [c for c in CORRUPTIONS if any(c in r["ce"] for r in corrupted.values())]
    extra = [c for c in EXTRA_CORRUPTIONS if any(c in r["ce"] for r in corrupted.values())]
    with_mce = any(r["mce"] is not None for r in corrupted.values())
    groups = standard + (["mCE"] if with_mce else []) + extra
    width = 0.8 / len(corrupted)
    figure, axis = plt.subplots(figsize=(2 + 0.45 * len(groups) * max(1, len(corrupted) / 2), 4), dpi=120)
    for index, (model, result) in enumerate(corrupted.items()):
        mce = [np.nan if result["mce"] is None else result["mce"]] if with_mce else []
        values = [result["ce"].get(c, np.nan) for c in standard] + mce + [result["ce"].get(c, np.nan) for c in extra]
        axis.bar(np.arange(len(groups)) + (index - (len(corrupted) - 1) / 2) * width, values, width, label=model)
    axis.axhline(100, color="grey", linestyle="--", linewidth=0.8, label="AlexNet")
    axis.set_xticks(range(len(groups)), groups, rotation=60, ha="right", fontsize=7)
    axis.set_ylabel("CE (%, lower better)")
    axis.set_title(f"{title}: corruption error per corruption, mCE over the 15, then the extras", fontsize=9)
    return save_figure(figure, axis, path, grid=False, legend_size=7)


def _plot_occlusion(occlusion: Dict, mode: str, path: Path) -> Path:
    figure, axis = plt.subplots(figsize=(6, 4), dpi=120)
    for name, modes in occlusion.items():
        if mode in modes:
            levels = sorted(modes[mode], key=float)
            axis.plot([float(level) for level in levels], [modes[mode][level] for level in levels], marker="o",
                      label=name)
    axis.set_xlabel("lambda" if mode != "random" else "fraction of patches dropped")
    axis.set_ylabel("top-1 (%)")
    axis.set_title(MODE_TITLES[mode], fontsize=9)
    return save_figure(figure, axis, path)


def _plot_reliability(results: Dict[str, Dict], title: str, path: Path, bins: int = 10) -> Path:
    figure, axis = plt.subplots(figsize=(5, 5), dpi=120)
    axis.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
    for name, result in results.items():
        confidence, correct = np.asarray(result["confidence"]), np.asarray(result["correct"])
        index = np.minimum((confidence * bins).astype(int), bins - 1)
        filled = [b for b in range(bins) if (index == b).any()]
        axis.plot([confidence[index == b].mean() for b in filled], [correct[index == b].mean() for b in filled],
                  marker="o", label=f"{name} (calib. error {result['calibration_error']:.1f})")
    axis.set_xlabel("confidence (max softmax over the set's classes)")
    axis.set_ylabel("accuracy")
    axis.set_title(f"{title} reliability", fontsize=9)
    return save_figure(figure, axis, path, grid=False, legend_size=7)
