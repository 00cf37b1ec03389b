"""Pictures of pretraining runs: the progressive factor by epoch, training loss and validation
top-1 / error from one or more ``log.jsonl`` files (one line per run), as in the paper's Fig. 2."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Sequence

import matplotlib

from .errors import InputNotFoundError, UserError

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_log(path: Path) -> List[Dict]:
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"log {path} does not exist (pretraining writes OUTPUT_DIR/log.jsonl)")
    rows = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict) or "epoch" not in row:
            raise UserError(f"log {path} line {number} is not an epoch record of tools/train.py's log.jsonl")
        rows.append(row)
    if not rows:
        raise UserError(f"log {path} has no epochs yet")
    return rows


def run_label(path: Path, rows: List[Dict]) -> str:
    return f"{Path(path).parent.name} ({rows[-1].get('recipe', '')})"


def _series(rows: List[Dict], key: str):
    points = [(row["epoch"], row[key]) for row in rows if row.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def plot_training(logs: Sequence[Path], out: Path) -> Dict[str, Path]:
    """Writes alpha.png (mean and 10-90 % band of alpha on MaskMix batches), loss.png, top1.png and
    error.png into ``out``; returns them."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = [(run_label(path, rows), rows) for path, rows in ((path, read_log(path)) for path in logs)]
    files = {}
    figure, axis = plt.subplots(figsize=(6, 4), dpi=120)
    for label, rows in runs:
        epochs, mean = _series(rows, "train_alpha_mean")
        if not epochs:
            continue
        line, = axis.plot(epochs, mean, marker=".", label=label)
        _, low = _series(rows, "train_alpha_q10")
        _, high = _series(rows, "train_alpha_q90")
        axis.fill_between(epochs, low, high, color=line.get_color(), alpha=0.2)
    axis.set(xlabel="epoch", ylabel="progressive factor alpha", title="alpha on MaskMix batches (mean, 10-90 %)")
    files["alpha"] = save_figure(figure, axis, out / "alpha.png")
    for key, name, ylabel, transform in (("train_loss", "loss", "training loss", None),
                                         ("val_top1", "top1", "validation top-1 (%)", None),
                                         ("val_top1", "error", "validation top-1 error (%)", lambda v: 100.0 - v)):
        figure, axis = plt.subplots(figsize=(6, 4), dpi=120)
        for label, rows in runs:
            epochs, values = _series(rows, key)
            axis.plot(epochs, [transform(v) for v in values] if transform else values, marker=".", label=label)
        axis.set(xlabel="epoch", ylabel=ylabel)
        files[name] = save_figure(figure, axis, out / f"{name}.png")
    return files


def save_figure(figure, axis, path: Path, grid: bool = True, legend_size: int = 8) -> Path:
    """Grid (optional), legend when something is labelled, tight layout; write ``path`` and free the figure."""
    if grid:
        axis.grid(alpha=0.3)
    if axis.get_legend_handles_labels()[0]:
        axis.legend(fontsize=legend_size)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
