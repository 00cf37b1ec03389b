"""Running a study's pending runs: here (one after another, or one per GPU at once), or through
submitit (a SLURM array job; submitit's local and debug clusters run the same array without one).

A run is pending unless its log.jsonl ends at the last epoch; every run starts with --resume auto,
so a run a kill interrupted continues from its last checkpoint. A failed run does not stop the
others: :func:`run_study` returns every outcome, and the caller reports the failures.
"""
from __future__ import annotations

import os
import queue
import signal
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import List, Optional

import submitit

from pretrain.errors import ConfigError

from .runs import RUNNING, Outcome, Run, TrainRun, progress
from .spec import Study

POLL_SECONDS = {"slurm": 30.0, "local": 2.0, "debug": 0.0}


def run_study(study: Study, wait_for_jobs: bool = True) -> Optional[List[Outcome]]:
    """Run what is not finished yet; None when jobs were submitted to a cluster without waiting."""
    runs = study.runs()
    states = {run: progress(run) for run in runs}
    pending = [run for run in runs if states[run].state in ("missing", "unfinished")]
    outcomes = [Outcome(run, "failed", 0.0, f"not run: {states[run].describe(run.epochs)} (raise epochs, or "
                                            f"move the folder away)") for run in runs if states[run].state == "beyond"]
    counts = {state: sum(reached.state == state for reached in states.values())
              for state in ("finished", "unfinished", "missing")}
    print(f"{len(runs)} runs: {counts['finished']} finished (skipped), {counts['unfinished']} to resume, "
          f"{counts['missing']} to start", flush=True)
    for outcome in outcomes:
        announce(outcome)
    if not pending:
        return outcomes
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM as Ctrl-C: end the runs too
    try:
        if study.executor.name == "local":
            return outcomes + run_here(study, pending)
        submitted = run_submitit(study, pending, wait_for_jobs)
        return None if submitted is None else outcomes + submitted
    except KeyboardInterrupt:
        RUNNING.terminate_all()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def announce(outcome: Outcome) -> None:
    run = outcome.run
    if outcome.status == "finished":
        print(f"{run.label}: finished in {outcome.seconds:.1f} s", flush=True)
    else:
        print(f"{run.label}: {outcome.status.upper()}: {outcome.detail}", flush=True)


def _started(run: Run, gpus: Optional[str]) -> None:
    logged = progress(run).epochs_logged
    how = f"resuming after epoch {logged} of {run.epochs}" if logged else f"{run.epochs} epochs"
    print(f"{run.label}: started ({how}{f', GPU {gpus}' if gpus is not None else ''}), output in "
          f"{run.folder / 'output.log'}", flush=True)


def train_run(study: Study, run: Run, gpus: Optional[str] = None) -> TrainRun:
    """The run as this study's executor starts it: under torchrun on a SLURM node of several GPUs."""
    processes = max(study.executor.options["gpus_per_node"], 1) if study.executor.name == "slurm" else 1
    return TrainRun(run, study.workdir, gpus=gpus, processes=processes)


def visible_gpus() -> List[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them for the runs."""
    import torch

    count = torch.cuda.device_count()
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    names = [name.strip() for name in listed.split(",") if name.strip()] if listed is not None else None
    return (names if names is not None else [str(index) for index in range(count)])[:count]


def gpu_slots(study: Study) -> List[Optional[str]]:
    """One entry per run at once: the GPU it gets, or None (one run at a time, the environment as it is);
    ``runs_per_gpu`` runs share each GPU."""
    option = study.executor.options.get("gpus", "auto")
    if option == "none":
        return [None]
    if option == "auto":
        on_cpu = all(setting.device == "cpu" for setting in study.settings)
        gpus = [] if on_cpu else visible_gpus()
        if len(gpus) == 1 and study.executor.options.get("runs_per_gpu", 1) == 1:
            gpus = []  # one run at a time on the one GPU there is, the environment as it is
    else:
        gpus = [str(gpu) for gpu in option]
    return [gpu for gpu in gpus for _ in range(study.executor.options.get("runs_per_gpu", 1))] or [None]


def run_here(study: Study, runs: List[Run]) -> List[Outcome]:
    """The runs in this machine's processes, as many at once as there are GPU slots. Ctrl-C or SIGTERM
    ends the running ones (their next study command resumes them) and starts no other."""
    slots: "queue.Queue[Optional[str]]" = queue.Queue()
    for slot in gpu_slots(study):
        slots.put(slot)
    stopping = threading.Event()

    def train(run: Run) -> Optional[Outcome]:
        gpus = slots.get()
        try:
            if stopping.is_set():
                return None
            _started(run, gpus)
            outcome = train_run(study, run, gpus)()
            if not stopping.is_set():  # an interrupted run is no failure to report
                announce(outcome)  # before the slot goes to the next run, so that the console keeps the order
            return outcome
        finally:
            slots.put(gpus)

    outcomes: List[Outcome] = []
    pool = ThreadPoolExecutor(slots.qsize())
    try:
        futures = {pool.submit(train, run) for run in runs}
        while futures:
            # a timeout, so that the main thread sees a signal while the runs go on
            done, futures = wait(futures, timeout=1.0, return_when=FIRST_COMPLETED)
            outcomes += [future.result() for future in done]
    except KeyboardInterrupt:
        stopping.set()
        RUNNING.terminate_all()  # before the pool waits for its threads, which wait for their runs
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return outcomes


def _executor(study: Study) -> submitit.AutoExecutor:
    options = study.executor.options
    try:
        executor = submitit.AutoExecutor(folder=study.root / "submitit" / "%j", cluster=options["cluster"])
    except RuntimeError as error:  # no sbatch / srun on this machine
        raise ConfigError(f"{study.file}: executor.cluster: slurm: {error} (cluster: local or debug runs the "
                          f"array without SLURM)") from None
    generic = {"time": "timeout_min", "gpus_per_node": "gpus_per_node", "cpus_per_task": "cpus_per_task",
               "mem_gb": "mem_gb", "job_name": "name"}
    parameters = {"nodes": 1, "tasks_per_node": 1, "name": f"study_{study.name}"}
    parameters.update({generic[key]: value for key, value in options.items() if key in generic})
    parameters.update({f"slurm_{key}": value for key, value in options.items()
                       if key not in generic and key != "cluster"})
    executor.update_parameters(**parameters)
    return executor


def run_submitit(study: Study, runs: List[Run], wait_for_jobs: bool) -> Optional[List[Outcome]]:
    """The runs as one array job, one task per run on one node; a run with several GPUs runs under
    torchrun, one process per GPU."""
    cluster = study.executor.options["cluster"]
    if cluster != "slurm" and not wait_for_jobs:  # submitit's local jobs end with this process
        raise ConfigError(f"--no-wait needs executor.cluster: slurm; the {cluster} cluster runs the jobs only while "
                          f"this command waits")
    executor = _executor(study)
    with executor.batch():
        jobs = {executor.submit(train_run(study, run)): run for run in runs}
    job_ids = sorted({job.job_id.split("_")[0] for job in jobs})
    print(f"submitted {len(jobs)} runs as job {', '.join(job_ids)} ({cluster}); submitit's logs in "
          f"{study.root / 'submitit'}", flush=True)
    if not wait_for_jobs:
        return None
    outcomes = []
    for job in submitit.helpers.as_completed(list(jobs), poll_frequency=POLL_SECONDS[cluster]):
        try:
            outcome = job.result()
        except Exception as error:  # the job itself failed (cancelled, out of time or memory): submitit says why
            outcome = Outcome(jobs[job], "failed", 0.0, f"job {job.job_id}: {' '.join(str(error).split())[-2000:]}")
        outcomes.append(outcome)
        announce(outcome)
    return outcomes
