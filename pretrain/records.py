"""A run's per-epoch records: one JSON line per epoch in log.jsonl (everything the epoch measured) and
timm's summary.csv (its columns, by timm's own writer), and their repair when a resumed run continues
from an earlier checkpoint than the records reach."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Dict, List, Optional

from timm.utils import update_summary

from .checkpoint import atomic_file

_logger = logging.getLogger("pretrain")

LOG = "log.jsonl"
SUMMARY = "summary.csv"


def append_record(output_dir: Path, record: Dict) -> None:
    """Add one epoch to log.jsonl and summary.csv."""
    with open(Path(output_dir) / LOG, "a") as log:
        log.write(json.dumps(record) + "\n")
    _append_summary(Path(output_dir) / SUMMARY, record)


def _append_summary(path: Path, record: Dict) -> None:
    update_summary(record["epoch"], {"loss": record["train_loss"]},
                   {key: record.get(f"val_{key}", "") for key in ("loss", "top1", "top5")}, path,
                   lr=record["train_lr"], write_header=not path.exists() or path.stat().st_size == 0)


def reconcile(output_dir: Path, state: Dict) -> None:
    """Make the records end at the resumed checkpoint's epoch: drop lines of later epochs (they are
    trained again) and torn ones, restore the epoch's own line from the checkpoint when a kill came
    before it was written, and write summary.csv again from the result."""
    path = Path(output_dir) / LOG
    lines = [line for line in (path.read_text(errors="replace").splitlines() if path.is_file() else [])
             if line.strip()]
    epoch = state["epoch"]
    records = [_record(line) for line in lines]
    kept = [record for record in records if record is not None and record.get("epoch", -1) <= epoch]
    torn = sum(record is None for record in records)
    restored = bool(state.get("record")) and not any(record.get("epoch") == epoch for record in kept)
    if restored:
        kept.append(state["record"])
    if restored or len(kept) != len(lines):
        with atomic_file(path) as tmp:
            tmp.write_text("".join(json.dumps(record) + "\n" for record in kept))
        _logger.info("log.jsonl brought in line with the checkpoint of epoch %d: %d later line(s) and %d torn "
                     "line(s) dropped%s", epoch, len(lines) - torn + restored - len(kept), torn,
                     ", its own line restored" if restored else "")
    _rewrite_summary(Path(output_dir) / SUMMARY, kept)


def _rewrite_summary(path: Path, records: List[Dict]) -> None:
    if not records:
        path.unlink(missing_ok=True)
        return
    with atomic_file(path) as tmp:
        for record in records:
            _append_summary(tmp, record)


def _record(line: str) -> Optional[Dict]:
    """An epoch record of log.jsonl, or None for a line a kill cut short."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None
