"""``make demo``: pretraining -> transfer -> robustness -> report, on scikit-learn's digits.

Every stage runs the suite's real command-line tools in their own processes, exactly as a user
would (the commands are written to OUT/commands.sh), with the static configs of configs/demo (the
pretraining YAMLs and the mm configs, each with ``_base_`` on the real ones); what changes per run
(data root, checkpoint, iterations, seed) goes in through the tools' flags and ``--cfg-options``. It
sits above tools/: it drives them and imports no tool. Logs go to OUT/logs/, the report to
OUT/report.md.
"""
from __future__ import annotations

import argparse
import codecs
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import yaml

from pretrain.errors import UserError
from pretrain.plots import read_log
from transfer.runner import last_metrics

from . import digits, report

ROOT = Path(__file__).resolve().parents[1]
SEGMENTATION_CONFIGS = {"linear": "configs/demo/linear_deit-tiny_digits.py",
                        "segmenter": "configs/demo/segmenter_deit-tiny_mask_digits.py"}
DETECTION_CONFIG = "configs/demo/mask-rcnn_pvt-tiny_fpn_digits.py"
LOADERS = ("train_dataloader", "val_dataloader", "test_dataloader")
MODELS = ("deit", "pvt")
RECIPES = ("baseline", "transmix", "mixpro")
DECODERS = ("linear", "segmenter")
STUDIES = ("digits_table6", "digits_table10")
MARKER = ".mixpro-demo"


@dataclass(frozen=True)
class Scale:
    """How much of each stage runs. ``pretrain_epochs`` None: the epochs of configs/demo."""

    name: str
    image_limit: int  # images per digit split, 0: all
    pretrain_epochs: Optional[Dict[str, int]]
    pretrain_batch: Optional[int]
    canvases: tuple  # (train, val)
    seg_iters: int
    det_epochs: int


FULL = Scale("full", 0, None, None, (400, 100), 400, 2)
QUICK = Scale("quick", 48, {"deit": 1, "pvt": 1}, 16, (8, 4), 2, 1)


# The CPU demo's numbers repeat on any x86-64 machine with AVX2 only if every process computes the same
# floating-point sums: the kernels torch, oneDNN and MKL pick depend on the CPU's vector instructions
# and on the thread count (docs/demo/repeatability.md has the measurements).
REPEATABLE_CPU = {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "ATEN_CPU_CAPABILITY": "avx2",
                  "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2", "CUDA_VISIBLE_DEVICES": ""}


class StageError(UserError, RuntimeError):
    """A tool the demo ran failed; the message names its log and shows its end."""


def shown_text(line: str) -> str:
    """What a terminal shows of a line that progress bars rewrote with carriage returns: its last
    non-empty part."""
    return next((part for part in reversed(line.split("\r")) if part.strip()), "")


class LiveStatus:
    """One terminal line, rewritten in place, showing the latest line or progress bar a running tool
    printed. Only for a terminal: in a file (a CI log) the rewrites would pile up."""

    def __init__(self, name: str) -> None:
        self.prefix = f"  {name}: "
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.unfinished = ""  # after the last newline: a progress bar's redraws, or a line not yet ended
        self.latest = ""

    def feed(self, chunk: bytes) -> None:
        text = self.unfinished + self.decoder.decode(chunk)
        lines = text.split("\n")
        self.unfinished = lines[-1][-4096:]  # the latest redraw of a bar fits; older ones need not be kept
        latest = next((shown_text(line) for line in reversed(lines) if line.strip()), "")
        if latest and latest != self.latest:
            self.latest = latest
            self._write(self.prefix + latest.strip())

    def clear(self) -> None:
        self._write("")

    def _write(self, text: str) -> None:
        width = shutil.get_terminal_size().columns - 1  # the last column would wrap on some terminals
        sys.stdout.write("\r" + text[:width].ljust(width) + "\r")
        sys.stdout.flush()


class Runner:
    """Runs tools as subprocesses, logs each to OUT/logs/NAME.log and appends it to commands.sh. A
    stage prints a line when it starts and one with its time when it ends; on a terminal a line in
    between follows the tool's output, since a stage can run for minutes."""

    def __init__(self, out: Path, environment: Optional[Dict[str, str]] = None) -> None:
        self.out = out
        self.environment = environment or {}
        self.logs = out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.commands = out / "commands.sh"
        self.commands.write_text("#!/usr/bin/env bash\n# The commands make demo ran, from the repository root.\n"
                                 "set -euo pipefail\n"
                                 + "".join(f"export {key}={shlex.quote(value)}\n" for key, value in self.environment.items()))

    def tool(self, name: str, tool: str, *args) -> float:
        command = [sys.executable, str(ROOT / "tools" / tool), *map(str, args)]
        with open(self.commands, "a") as script:
            script.write(shlex.join(["python", f"tools/{tool}", *map(str, args)]) + "\n")
        log = self.logs / f"{name}.log"
        print(f"  {name:<32s} started: tools/{tool}, log {log.relative_to(self.out)}", flush=True)
        status = LiveStatus(name) if sys.stdout.isatty() else None
        start = time.perf_counter()
        # Unbuffered on both ends, so that the log (and `tail -f` on it) grows as the tool prints.
        environment = {**os.environ, **self.environment, "PYTHONUNBUFFERED": "1"}
        with open(log, "wb", buffering=0) as handle, subprocess.Popen(
                command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as process:
            for chunk in iter(lambda: process.stdout.read1(1 << 16), b""):
                handle.write(chunk)
                if status:
                    status.feed(chunk)
            returncode = process.wait()
        elapsed = time.perf_counter() - start
        if status:
            status.clear()
        if returncode != 0:
            # From bytes: reading text would turn every redraw of a progress bar into a line of its own.
            lines = log.read_bytes().decode(errors="replace").rstrip("\n").split("\n")[-25:]
            tail = "\n".join(map(shown_text, lines))
            raise StageError(f"{name} failed (exit {returncode}); log: {log}\n{tail}")
        print(f"  {name:<32s} {elapsed:6.1f} s", flush=True)
        return elapsed


def prepare_output(out: Path) -> Optional[str]:
    """A fresh output folder. A previous demo output (it carries a marker file) is removed, so no
    stale result is reused; any other non-empty folder is refused."""
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise UserError(f"{out} exists, is not empty and was not written by the demo; "
                            f"choose another --out or empty it")
        shutil.rmtree(out)
        message = f"removed the previous demo output in {out}: every stage runs again, nothing is reused"
    else:
        message = None
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by tools/run_demo.py; removed and rewritten by the next demo run\n")
    return message


def last_mm_metrics(work_dir: Path, key: str) -> Dict[str, float]:
    try:
        return last_metrics(work_dir, key)
    except KeyError as error:
        raise StageError(error.args[0]) from None


def pretrain(runner: Runner, scale: Scale, out: Path, data: Path, seed: int, device: str) -> Dict[str, Dict]:
    results = {}
    for model in MODELS:
        for recipe in RECIPES:
            name = f"{model}_{recipe}"
            run_dir = out / "pretrain" / name
            args = ["--config", f"configs/demo/{model}_tiny_digits_{recipe}.yaml", "--data-path", data,
                    "--output-dir", run_dir, "--seed", seed, "--device", device]
            if scale.pretrain_epochs:
                args += ["--epochs", scale.pretrain_epochs[model], "--warmup-epochs", 0]
            if scale.pretrain_batch:
                args += ["--batch-size", scale.pretrain_batch]
            seconds = runner.tool(f"pretrain_{name}", "train.py", *args)
            checkpoint = out / "checkpoints" / f"{model}_tiny_digits_{recipe}.pth"
            runner.tool(f"export_{name}", "export_checkpoint.py", run_dir / "checkpoint_last.pth", checkpoint)
            log = read_log(run_dir / "log.jsonl")
            config = yaml.safe_load((run_dir / "config.yaml").read_text())
            results[name] = {"model": model, "recipe": recipe, "checkpoint": checkpoint, "log": run_dir / "log.jsonl",
                             "val_top1": log[-1]["val_top1"], "val_loss": log[-1]["val_loss"],
                             "train_loss": log[-1]["train_loss"], "epochs": len(log), "seconds": seconds,
                             "parameters": log[-1]["n_parameters"], "mask_patch_size": config["mask_patch_size"]}
    return results


def segmentation(runner: Runner, scale: Scale, out: Path, voc: Path, pretrained: Dict, seed: int) -> Dict[str, Dict]:
    results = {}
    for decoder in DECODERS:
        for recipe in RECIPES:
            name = f"{decoder}_{recipe}"
            config = SEGMENTATION_CONFIGS[decoder]
            work_dir = out / "segmentation" / name
            iters = scale.seg_iters
            options = [f"model.backbone.init_cfg.checkpoint={pretrained[f'deit_{recipe}']['checkpoint']}",
                       *(f"{loader}.dataset.data_root={voc}" for loader in LOADERS),
                       f"train_cfg.max_iters={iters}", f"train_cfg.val_interval={iters}",
                       f"default_hooks.checkpoint.interval={iters}", f"param_scheduler.0.end={iters}",
                       f"randomness.seed={seed}"]
            seconds = runner.tool(f"segmentation_{name}", "seg_train.py", config, "--work-dir", work_dir,
                                  "--cfg-options", *options)
            metrics = last_mm_metrics(work_dir, "mIoU")
            results[name] = {"decoder": decoder, "recipe": recipe, "mIoU": metrics["mIoU"], "aAcc": metrics["aAcc"],
                             "mAcc": metrics["mAcc"], "iters": iters, "seconds": seconds, "config": config}
    return results


def detection(runner: Runner, scale: Scale, out: Path, coco: Path, pretrained: Dict, seed: int) -> Dict[str, Dict]:
    results = {}
    epochs = scale.det_epochs
    annotations = coco / "annotations" / "instances_val2017.json"
    for recipe in RECIPES:
        work_dir = out / "detection" / recipe
        options = [f"model.backbone.init_cfg.checkpoint={pretrained[f'pvt_{recipe}']['checkpoint']}",
                   *(f"{loader}.dataset.data_root={coco}/" for loader in LOADERS),
                   f"val_evaluator.ann_file={annotations}", f"test_evaluator.ann_file={annotations}",
                   f"train_cfg.max_epochs={epochs}", f"train_cfg.val_interval={epochs}",
                   f"default_hooks.checkpoint.interval={epochs}", f"param_scheduler.1.end={epochs}",
                   f"param_scheduler.1.milestones=[{max(epochs - 1, 1)}]", f"randomness.seed={seed}"]
        seconds = runner.tool(f"detection_{recipe}", "det_train.py", DETECTION_CONFIG, "--work-dir", work_dir,
                              "--cfg-options", *options)
        metrics = last_mm_metrics(work_dir, "coco/bbox_mAP")
        results[recipe] = {"recipe": recipe, "epochs": epochs, "seconds": seconds, "config": DETECTION_CONFIG,
                           **{key.split("/")[1]: metrics[key] for key in
                              ("coco/bbox_mAP", "coco/bbox_mAP_50", "coco/segm_mAP", "coco/segm_mAP_50")}}
    return results


def robustness(runner: Runner, out: Path, data: Path, pretrained: Dict, seed: int, device: str) -> Dict:
    report_dir = out / "robustness"
    args = []
    for entry in pretrained.values():
        args += ["--checkpoint", entry["checkpoint"]]
    args += ["--classes", data / "classes.txt", "--val", data / "val", "--shifted", data / "rotated",
             "--ood", data / "ood", "--names", "held-out digits", "rotated digits", "digits 8-9",
             "--random-patch-size", 4, "--device", device, "--workers", 0, "--batch-size", 128, "--seed", seed,
             "--out", report_dir]
    runner.tool("robustness", "robustness_report.py", *args)
    return json.loads((report_dir / "report.json").read_text())


def studies(runner: Runner, scale: Scale, out: Path, data: Path, seeds: int, device: str) -> Dict[str, Dict]:
    """The digit studies of Tables 6 and 10 (configs/studies) over ``seeds`` seeds: their interval tables."""
    shorter = []
    if scale.pretrain_epochs:
        shorter += [f"epochs={scale.pretrain_epochs['deit']}", "warmup_epochs=0"]
    if scale.pretrain_batch:
        shorter += [f"batch_size={scale.pretrain_batch}"]
    results = {}
    for name in STUDIES:
        root = out / "studies" / name
        runner.tool(f"study_{name}", "study.py", f"configs/studies/{name}.yaml", "--seeds", seeds, "--output", root,
                    "--set", f"data_path={data}", f"device={device}", *shorter)
        results[name] = json.loads((root / "study.json").read_text())
    return results


def pictures(runner: Runner, out: Path, data: Path, pretrained: Dict) -> Dict[str, Path]:
    """Training curves per model family, and MaskMix / CutMix / attention on held-out digits."""
    files = {}
    samples = out / "pictures" / "samples"
    samples.mkdir(parents=True, exist_ok=True)
    firsts = [sorted(folder.glob("*.png"))[:1] for folder in sorted((data / "val").iterdir())]
    for first in [files[0] for files in firsts if files][:6]:  # one held-out image per class
        shutil.copy(first, samples / f"{first.parent.name}_{first.name}")
    for model in MODELS:
        logs = [pretrained[f"{model}_{recipe}"]["log"] for recipe in RECIPES]
        runner.tool(f"plot_training_{model}", "plot_training.py", *logs, "--out", out / "pictures" / model)
        files[f"{model}_curves"] = out / "pictures" / model
        mixpro = pretrained[f"{model}_mixpro"]
        mixing = out / "pictures" / f"mixing_{model}.png"
        runner.tool(f"visualize_mixing_{model}", "visualize_mixing.py", "--images", samples, "--checkpoint",
                    mixpro["checkpoint"], "--mask-patch-size", mixpro["mask_patch_size"], "--out", mixing)
        files[f"{model}_mixing"] = mixing
    return files


def resolve_device(requested: str) -> str:
    """'cpu' or 'cuda' for --device auto / cpu / cuda."""
    import torch

    if requested not in ("auto", "cpu", "cuda"):
        raise UserError(f"--device must be auto, cpu or cuda, got {requested!r}")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: CUDA is not available here; use --device cpu (the default) or auto")
    return requested


def run(out: Path, scale: Scale = FULL, seed: int = 0, device: str = "cpu", seeds: int = 1) -> Path:
    """The whole demo; returns OUT/report.md. On the CPU every tool runs with the kernels and thread
    count pinned (REPEATABLE_CPU); ``seeds`` > 1 adds the digit studies of Tables 6 and 10."""
    if seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {seeds}")
    device = resolve_device(device)
    out = Path(out).resolve()
    start = time.perf_counter()
    message = prepare_output(out)
    if message:
        print(message)
    runner = Runner(out, REPEATABLE_CPU if device == "cpu" else {})
    timings: Dict[str, float] = {}

    def stage(name: str) -> None:
        timings[name] = time.perf_counter() - start - sum(timings.values())
        print(f"[{name}: {timings[name]:.0f} s]", flush=True)

    print(f"demo ({scale.name} scale, seed {seed}{f', studies over {seeds} seeds' if seeds > 1 else ''}, {device}) "
          f"-> {out}", flush=True)
    data_root = out / "data"
    counts = digits.write_classification(data_root / "digits", seed, limit=scale.image_limit)
    roots = digits.write_canvases(data_root, seed, *scale.canvases)
    stage("data")
    pretrained = pretrain(runner, scale, out, data_root / "digits", seed, device)
    stage("pretraining")
    seed_studies = {}
    if seeds > 1:
        seed_studies = studies(runner, scale, out, data_root / "digits", seeds, device)
        stage("studies")
    seg = segmentation(runner, scale, out, roots["pascal_context"], pretrained, seed)
    stage("segmentation")
    det = detection(runner, scale, out, roots["coco"], pretrained, seed)
    stage("detection")
    robust = robustness(runner, out, data_root / "digits", pretrained, seed, device)
    stage("robustness")
    figures = pictures(runner, out, data_root / "digits", pretrained)
    stage("pictures")
    results = {"scale": scale.name, "seed": seed, "device": device, "images": counts, "canvases": list(scale.canvases),
               "pretraining": pretrained, "studies": seed_studies, "segmentation": seg, "detection": det,
               "robustness": robust, "pictures": figures, "timings_s": timings,
               "total_s": time.perf_counter() - start}
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    path = report.write(out, results)
    print(f"wrote {path} ({results['total_s'] / 60:.1f} min)")
    return path


def main(argv: Optional[List[str]] = None) -> Path:
    parser = argparse.ArgumentParser(description="The whole pipeline on scikit-learn's digits.")
    parser.add_argument("--out", type=Path, default=ROOT / "demo_output", help="report folder (rewritten)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu",
                        help="cpu (default: kernels and threads pinned, so the numbers repeat on any x86-64 CPU with "
                             "AVX2), cuda, or auto (cuda when present)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="N > 1: also the digit studies of Tables 6 and 10 over seeds 0..N-1 (configs/studies), "
                             "with 95 %% intervals in the report; meant for a GPU")
    parser.add_argument("--quick", action="store_true",
                        help="a few iterations of every stage (what the test suite runs), not the demo's numbers")
    args = parser.parse_args(argv)
    return run(args.out, QUICK if args.quick else FULL, args.seed, args.device, args.seeds)
