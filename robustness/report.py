"""Report of a robustness comparison: report.md (Table 5 of the paper plus occlusion), report.json,
CSVs and PNG plots (occlusion curves per mode, reliability diagram on the shifted set)."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Dict, List, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

IMAGENET_TITLES = {"val": "ImageNet val", "shifted": "IN-A", "ood": "IN-O"}
MODE_TITLES = {"random": "Random patch dropping (fraction dropped)",
               "salient": "Salient patch dropping (lambda: attention mass dropped)",
               "non_salient": "Non-salient patch dropping (lambda: attention mass kept)"}


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def write_report(results: Dict[str, Dict], skipped: Dict[str, str], out: Path, notes: List[str],
                 titles: Optional[Dict[str, str]] = None) -> Dict[str, Path]:
    """``results[model][benchmark]`` ('val', 'shifted', 'ood') as produced by robustness.evaluate;
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
                     o.get("auroc"), o.get("fpr_at_95_tpr")])
    shifted, ood = titles["shifted"], titles["ood"]
    header = ["model", f"{titles['val']} top-1", f"{shifted} top-1", f"{shifted} calib. error (lower better)",
              f"{shifted} AURRA", f"{ood} AUPR", f"{ood} AUROC", f"{ood} FPR@95TPR (lower better)"]
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
    files["md"].write_text("\n".join(lines) + "\n")
    return files


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
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


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
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
