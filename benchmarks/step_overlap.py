"""Where the training step loses time when the GPU data path runs beside it, against synthetic batches
already on the device, in one process (one compilation). For each phase it reports the img/s, the time the
training thread waits for a batch, and, from a torch.profiler trace of a window of steps, per step: the
GPU's kernel time on the training stream, on the data streams, both at once, and with no kernel at all;
and the median wall and thread-CPU time of each stage of the GPU path's threads (loader, decode, augment).

    PYTHONPATH=. python benchmarks/step_overlap.py --data-path DIR [--compile] --out overlap.json [PRETRAIN OPTIONS]

Phases: a warm-up epoch (compilation), one epoch per ``--switch-intervals`` value (Python's GIL switch
interval while it runs), then ``--synthetic-steps`` steps on synthetic batches.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import torch

from pretrain.config import parse_args
from pretrain.data import BadImageCounter, SyntheticBatches, set_epoch
from pretrain.engine import train_one_epoch, updates_per_epoch
from pretrain.builder import build_data, build_model, build_training, open_datasets, start_process, step_options


RATE_FROM = 8


class ObservedLoader:
    """Iterates ``loader``, timing each wait for a batch and profiling steps [first, first + count)."""

    def __init__(self, loader, first: int, count: int) -> None:
        self.loader, self.first, self.count = loader, first, count
        self.waits: List[float] = []
        self.times: List[float] = []
        self.trace: Dict = {}
        self.window_s = 0.0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        profiler, started = None, 0.0
        iterator = iter(self.loader)
        for step in range(len(self.loader)):
            if step == self.first:
                _synchronize()
                profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA])
                profiler.__enter__()
                started = time.perf_counter()
            if step == self.first + self.count and profiler is not None:
                _synchronize()
                self.window_s = time.perf_counter() - started
                profiler.__exit__(None, None, None)
                self.trace = _kernel_trace(profiler)
                profiler = None
            start = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                return
            self.waits.append(time.perf_counter() - start)
            self.times.append(start)
            yield batch

    def rate(self, first: int, last: int) -> float:
        """Batches per second from step ``first`` to step ``last`` (by when each asked for its batch)."""
        return (last - first) / (self.times[last] - self.times[first])


class ThreadTimes:
    """Wall and thread-CPU milliseconds of calls of the data threads' stages (wrapped in place)."""

    def __init__(self) -> None:
        self.calls: Dict[str, List] = {}

    def timed(self, label: str, function, *args, **kwargs):
        """function(*args, **kwargs), its times recorded under ``label``."""
        start, cpu = time.perf_counter(), time.thread_time()
        result = function(*args, **kwargs)
        self.calls.setdefault(label, []).append((time.perf_counter() - start, time.thread_time() - cpu))
        return result

    def wrap(self, owner, name: str, label: str) -> None:
        function = getattr(owner, name)
        setattr(owner, name, lambda *args, **kwargs: self.timed(label, function, *args, **kwargs))

    def wrap_iterable(self, owner, name: str, label: str) -> None:
        """Times each step of iterating ``owner.name`` (the decode thread's wait for the loader)."""
        iterable, times = getattr(owner, name), self

        class Timed:
            def __len__(self):
                return len(iterable)

            def __getattr__(self, attribute):
                return getattr(iterable, attribute)

            def __iter__(self):
                iterator = iter(iterable)
                while True:
                    try:
                        item = times.timed(label, next, iterator)
                    except StopIteration:
                        return
                    yield item

        setattr(owner, name, Timed())

    def summary(self) -> Dict:
        out = {}
        for label, calls in self.calls.items():
            calls = calls[RATE_FROM:]
            out[label] = {"wall_ms": 1000 * statistics.median(c[0] for c in calls),
                          "cpu_ms": 1000 * statistics.median(c[1] for c in calls)}
        self.calls = {}
        return out


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _kernel_trace(profiler) -> Dict:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "trace.json"
        profiler.export_chrome_trace(str(path))
        events = json.loads(path.read_text())["traceEvents"]
    spans: Dict[int, List] = {}
    for event in events:
        if event.get("cat") == "kernel":
            spans.setdefault(event["args"]["stream"], []).append((event["ts"], event["ts"] + event["dur"]))
    return spans


def _union(spans: List) -> List:
    merged: List = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def _length(spans: List) -> float:
    return sum(end - start for start, end in spans)


def _intersection(a: List, b: List) -> float:
    total, i, j = 0.0, 0, 0
    while i < len(a) and j < len(b):
        total += max(0.0, min(a[i][1], b[j][1]) - max(a[i][0], b[j][0]))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def summarize(observed: ObservedLoader, batch_size: int) -> Dict:
    """img/s and waits for a batch before the profiled window, from step RATE_FROM (the loader is started);
    per-step milliseconds of the profiled window, where the training stream is the one with most kernel time."""
    spans = observed.trace
    if not spans:
        raise RuntimeError("the profiled window recorded no kernels: does the epoch have more than "
                           f"{observed.first + observed.count} steps, on a CUDA device?")
    training_stream = max(spans, key=lambda stream: _length(_union(spans[stream])))
    training = _union(spans[training_stream])
    data = _union([span for stream, items in spans.items() if stream != training_stream for span in items])
    busy = _union(training + data)
    per_step = 1.0 / 1000 / observed.count  # trace times are in microseconds
    first, last = busy[0][0], busy[-1][1]
    waits = [1000 * w for w in observed.waits[RATE_FROM:observed.first]]
    return {
        "img_per_s": batch_size * observed.rate(RATE_FROM, observed.first),
        "wait_for_batch_ms": {"mean": statistics.mean(waits), "median": statistics.median(waits), "max": max(waits)},
        "profiled_ms_per_step": 1000 * observed.window_s / observed.count,
        "training_stream_kernel_ms_per_step": _length(training) * per_step,
        "data_streams_kernel_ms_per_step": _length(data) * per_step,
        "both_at_once_ms_per_step": _intersection(training, data) * per_step,
        "no_kernel_ms_per_step": ((last - first) - _length(busy)) * per_step,
        "training_kernels_per_step": len(spans[training_stream]) / observed.count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-path", required=True)
    parser.add_argument("--config", default="configs/pretrain/deit_small_mixpro.yaml")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--switch-intervals", type=float, nargs="+", default=[sys.getswitchinterval()])
    parser.add_argument("--profile-first", type=int, default=40,
                        help="first profiled step of an epoch; img/s is measured from step %d to it" % RATE_FROM)
    parser.add_argument("--profile-steps", type=int, default=12)
    parser.add_argument("--synthetic-steps", type=int, default=64)
    parser.add_argument("--out", default="")
    args, pretrain_options = parser.parse_known_args()  # the rest goes to tools/train.py's parser
    output_dir = tempfile.mkdtemp(prefix="step_overlap_")
    config = parse_args(["--config", args.config, "--data-path", args.data_path, "--data-pipeline", "gpu",
                         "--batch-size", str(args.batch_size), "--workers", str(args.workers), "--epochs", "100",
                         "--output-dir", output_dir, "--print-freq", "16", *(["--compile"] if args.compile else []),
                         *pretrain_options])
    dist_info, _ = start_process(config)
    device = dist_info.device
    datasets = open_datasets(config)  # first: it counts the classes the model needs
    model = build_model(config)
    train_loader = build_data(config, model, dist_info, datasets).train_loader
    parts = build_training(config, model, dist_info, updates_per_epoch(len(train_loader), config.grad_accum_steps))
    threads = ThreadTimes()  # the GPU path's stages, as run in its decode and augment threads
    threads.wrap(train_loader.decoder, "decode_packed", "decode_packed")
    threads.wrap(train_loader.decoder, "augment_packed", "augment_packed")
    threads.wrap_iterable(train_loader, "loader", "next_loader_batch")
    options = step_options(config, print_freq=config.print_freq)
    bad_images = BadImageCounter(1.0, device)

    def epoch(loader, index: int, profile: bool = True) -> Dict:
        observed = ObservedLoader(loader, args.profile_first if profile else -1, args.profile_steps)
        parts.mixer.set_progress(index, config.epochs)
        train_one_epoch(parts.train_model, observed, parts.mixer, parts.optimizer, parts.scheduler, parts.scaler,
                        device, index, options, bad_images, model_ema=parts.model_ema, show_progress=False)
        return summarize(observed, config.batch_size) if profile else {}

    result = {"compile": args.compile, "compile_mode": config.compile_mode if args.compile else None,
              "batch_size": args.batch_size, "workers": args.workers,
              "steps_per_epoch": len(train_loader), "gpu_path": {}}
    default_interval = sys.getswitchinterval()
    for index, interval in enumerate([None, *args.switch_intervals]):
        set_epoch(train_loader, index)
        sys.setswitchinterval(interval or default_interval)
        summary = epoch(train_loader, index, profile=interval is not None)
        summary["data_threads_median"] = threads.summary()
        if interval is not None:
            result["gpu_path"][f"switch_interval_{interval:g}"] = summary
            print(interval, json.dumps(summary), flush=True)
    sys.setswitchinterval(default_interval)
    synthetic = SyntheticBatches(config.batch_size, config.input_size, config.num_classes, args.synthetic_steps, device)
    result["synthetic"] = epoch(synthetic, len(args.switch_intervals) + 1)
    print("synthetic", json.dumps(result["synthetic"]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
