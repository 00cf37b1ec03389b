"""One run of a study: a (setting, seed) pair trained by ``tools/train.py`` in a subprocess, its state
read off its log.jsonl, and the outcome of an attempt.

The run's folder holds what train.py writes plus ``output.log`` (the run's stdout and stderr, every
attempt appended after a header line) and ``.study.lock``: the attempt holds a lock on it, and so
does the training process it starts, so that a second study on the same root (or a rerun while an
orphaned run still trains) never writes into the same folder at once.
"""
from __future__ import annotations

import fcntl
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import submitit

TRAIN_SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "train.py"
LOG = "log.jsonl"
OUTPUT = "output.log"
LOCK = ".study.lock"
TAIL_LINES = 20


@dataclass(frozen=True)
class Run:
    setting: str
    seed: int
    folder: Path
    epochs: int
    arguments: Tuple[str, ...]  # tools/train.py's command line after the script

    @property
    def label(self) -> str:
        return f"{self.setting} seed {self.seed}"


@dataclass(frozen=True)
class Progress:
    """missing: never started; unfinished: started, not at its last epoch; finished: its log ends at
    the last epoch; beyond: its log goes past the study's epochs (another schedule: not comparable)."""
    state: str
    epochs_logged: int
    records: Tuple[Dict, ...]

    def describe(self, epochs: int) -> str:
        if self.state == "missing":
            return "missing: never started"
        if self.state == "beyond":
            return f"beyond: its log has {self.epochs_logged} epochs, the study asks for {epochs}"
        return f"{self.state}: {self.epochs_logged} of {epochs} epochs logged"


def read_records(folder: Path) -> List[Dict]:
    """log.jsonl's epoch records; a line a kill cut short is left out, as train.py does on resume."""
    path = Path(folder) / LOG
    records = []
    for line in (path.read_text(errors="replace").splitlines() if path.is_file() else []):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("epoch"), int):
            records.append(record)
    return records


def progress(run: Run) -> Progress:
    records = read_records(run.folder)
    if not records:
        started = (run.folder / OUTPUT).is_file()
        return Progress("unfinished" if started else "missing", 0, ())
    last = records[-1]["epoch"]
    state = "finished" if last == run.epochs - 1 else "beyond" if last >= run.epochs else "unfinished"
    return Progress(state, last + 1, tuple(records))


@dataclass(frozen=True)
class Outcome:
    """finished, failed, or busy (another process holds the run's lock)."""
    run: Run
    status: str
    seconds: float
    detail: str = ""  # why it failed, with the end of its output


class _Processes:
    """Training processes this study started that still run. On Ctrl-C or SIGTERM the study ends them:
    left going, a run would race its own resumption by the next study command."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set = set()
        self._stopping = False

    def add(self, process: subprocess.Popen) -> None:
        with self._lock:
            self._running.add(process)
            if self._stopping:  # started in the instant between the interrupt and terminate_all
                process.terminate()

    def discard(self, process: subprocess.Popen) -> None:
        with self._lock:
            self._running.discard(process)

    def terminate_all(self) -> None:
        with self._lock:
            self._stopping = True
            for process in self._running:
                process.terminate()


RUNNING = _Processes()


def _shown_tail(data: bytes) -> str:
    """The last lines as a terminal shows them: progress bars rewrite a line with carriage returns."""
    lines = data.decode(errors="replace").rstrip("\n").split("\n")[-TAIL_LINES:]
    return "\n".join(next((part for part in reversed(line.split("\r")) if part.strip()), "") for line in lines)


class TrainRun(submitit.helpers.Checkpointable):
    """A run as ``python tools/train.py ... --resume auto`` (under torchrun when it has several
    processes), its output appended to the run's output.log. Picklable, so that submitit runs it on a
    cluster node; Checkpointable, so that submitit requeues it after a time-out or pre-emption, and
    --resume auto continues from the last epoch's checkpoint."""

    def __init__(self, run: Run, workdir: Path, gpus: Optional[str] = None, processes: int = 1) -> None:
        self.run = run
        self.workdir = Path(workdir)
        self.gpus = gpus  # CUDA_VISIBLE_DEVICES for the run; None: as inherited
        self.processes = processes

    def command(self) -> List[str]:
        if self.processes > 1:
            return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={self.processes}",
                    str(TRAIN_SCRIPT), *self.run.arguments]
        return [sys.executable, str(TRAIN_SCRIPT), *self.run.arguments]

    def __call__(self) -> Outcome:
        run, start = self.run, time.perf_counter()
        run.folder.mkdir(parents=True, exist_ok=True)
        with open(run.folder / LOCK, "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return Outcome(run, "busy", 0.0, f"another process is training it (it holds {run.folder / LOCK})")
            environment = {**os.environ, "PYTHONUNBUFFERED": "1"}  # output.log grows as the run prints
            if self.gpus is not None:
                environment["CUDA_VISIBLE_DEVICES"] = self.gpus
            command = self.command()
            with open(run.folder / OUTPUT, "a+b") as output:
                size = output.seek(0, os.SEEK_END)
                if size:
                    output.seek(size - 1)
                    if output.read(1) != b"\n":
                        output.write(b"\n")  # a killed attempt's last line (a progress bar) has no end
                gpus = f"CUDA_VISIBLE_DEVICES={self.gpus} " if self.gpus is not None else ""
                output.write(f"=== study attempt {time.strftime('%Y-%m-%d %H:%M:%S')}, in {self.workdir}: "
                             f"{gpus}{shlex.join(command)}\n".encode())
                output.flush()
                begin = output.tell()
                # the child holds the lock too: killed without its parent, it still keeps others out
                process = subprocess.Popen(command, cwd=self.workdir, env=environment, stdout=output,
                                           stderr=subprocess.STDOUT, pass_fds=(lock.fileno(),))
                RUNNING.add(process)
                try:
                    returncode = process.wait()
                finally:
                    RUNNING.discard(process)
        seconds = time.perf_counter() - start
        reached = progress(run)
        if returncode == 0 and reached.state == "finished":
            return Outcome(run, "finished", seconds)
        with open(run.folder / OUTPUT, "rb") as output:
            output.seek(begin)
            tail = _shown_tail(output.read())
        why = f"exit status {returncode}" if returncode else f"exited but {reached.describe(run.epochs)}"
        return Outcome(run, "failed", seconds, f"{why}; output: {run.folder / OUTPUT}\n{tail}")
