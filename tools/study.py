"""Run a study: every setting of a study file over its seeds with tools/train.py, then the mean, sd and
95 % t-interval of each setting's top-1 and its difference to the reference setting, paired by seed.

    python tools/study.py STUDY.yaml                   # run what is not finished, then aggregate
    python tools/study.py STUDY.yaml --aggregate-only  # only read the runs' logs and write the tables
    python tools/study.py STUDY.yaml --dry-run         # list the runs, their state and their commands
    python tools/study.py STUDY.yaml --seeds 5 --set data_path=/data/imagenet device=cuda

A killed study continues where it stopped when started again: finished runs are skipped, interrupted
ones resume from their last checkpoint. Writes ROOT/study.md, study.csv, study.json and
study_top1.png; each run's folder is ROOT/SETTING/seed_N. The study file: docs/studies.md.
"""
import argparse
import shlex
import sys
from pathlib import Path

import yaml

from pretrain.errors import run_tool
from studies import aggregate, load_study, run_study
from studies.executors import train_run
from studies.runs import progress
from studies.spec import describe


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", type=Path, help="the study file (YAML)")
    parser.add_argument("--seeds", type=int, help="run seeds 0..N-1 instead of the file's seeds")
    parser.add_argument("--output", help="the study's folder instead of the file's output")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="common overrides of every run over the file's (tools/train.py options, '_' for '-'; "
                             "values read as YAML), e.g. --set data_path=/data/imagenet device=cuda")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--aggregate-only", action="store_true", help="start no run; aggregate what the runs logged")
    mode.add_argument("--dry-run", action="store_true", help="start no run; show each run's state and command")
    mode.add_argument("--no-wait", action="store_true",
                      help="slurm executor: submit the array job and return; aggregate later with --aggregate-only")
    args = parser.parse_args()

    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key] = yaml.safe_load(value) if value else ""
    study = load_study(args.study, seeds=args.seeds, output=args.output, overrides=overrides)
    print(describe(study), flush=True)
    if args.dry_run:
        for run in study.runs():
            print(f"{run.label}: {progress(run).describe(run.epochs)}\n  {shlex.join(train_run(study, run).command())}")
        return 0
    failures = []
    if not args.aggregate_only:
        try:
            outcomes = run_study(study, wait_for_jobs=not args.no_wait)
        except KeyboardInterrupt:
            print("interrupted: the runs started here were stopped (SLURM jobs go on); the same command continues "
                  "the study", file=sys.stderr)
            return 130
        if outcomes is None:
            print(f"not waiting for the jobs: python tools/study.py {shlex.quote(str(args.study))} --aggregate-only "
                  f"writes the tables once they are done")
            return 0
        failures = [outcome for outcome in outcomes if outcome.status != "finished"]
    files = aggregate(study)
    print("wrote " + ", ".join(str(path) for path in files.values()))
    if failures:
        print(f"{len(failures)} run(s) did not finish:", file=sys.stderr)
        for outcome in failures:
            print(f"  {outcome.run.label}: {outcome.detail.splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
