"""Studies (tools/study.py): the statistics, a killed study that continues, submitit's debug executor,
and bad study files (CPU; the demo's 0.2M-parameter DeiT on a few digits, 3 epochs a run)."""
import csv
import fcntl
import json
import math
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from scipy import stats

from demo.digits import write_classification
from pretrain.errors import UserError
from studies import aggregate, load_study, paired_difference, t_interval
from studies.executors import gpu_slots
from studies.runs import LOCK, OUTPUT, read_records

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "tools" / "study.py"
BASELINE = str(ROOT / "configs" / "demo" / "deit_tiny_digits_baseline.yaml")
MIXPRO = str(ROOT / "configs" / "demo" / "deit_tiny_digits_mixpro.yaml")
EPOCHS = 3


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits") / "digits"
    write_classification(root, seed=0, limit=48)  # 42 training images: 3 steps of 16 an epoch
    return root


def write_study(path: Path, digits: Path, **fields) -> Path:
    """Two settings x two seeds of 3 epochs; ``fields`` replace keys (None removes one)."""
    study = {"output": str(path.parent / "study"), "seeds": 2,
             "overrides": {"data_path": str(digits), "epochs": EPOCHS, "eval_every": 1, "batch_size": 16},
             "settings": [{"name": "baseline", "config": BASELINE}, {"name": "mixpro", "config": MIXPRO}], **fields}
    path.write_text(yaml.safe_dump({key: value for key, value in study.items() if value is not None}, sort_keys=False))
    return path


def study_command(path: Path, *extra, **kwargs):
    return subprocess.run([sys.executable, str(STUDY), str(path), *extra], capture_output=True, text=True,
                          timeout=600, **kwargs)


# (a) the statistics

def test_t_interval_is_mean_plus_minus_t_sd_over_root_n():
    values = [71.2, 73.5, 70.8, 72.9]
    mean, sd = statistics.mean(values), statistics.stdev(values)
    t_975_3 = 3.182446  # Student's t, 0.975 quantile, 3 degrees of freedom (a printed table's value)
    estimate = t_interval(values)
    assert (estimate.n, estimate.mean, estimate.sd) == (4, pytest.approx(72.1), pytest.approx(sd))
    assert estimate.low == pytest.approx(mean - t_975_3 * sd / 2, abs=1e-5)
    assert estimate.high == pytest.approx(mean + t_975_3 * sd / 2, abs=1e-5)
    assert (estimate.low, estimate.high) == pytest.approx(stats.t.interval(0.95, 3, loc=mean, scale=sd / 2))
    assert estimate.excludes_zero is True
    single = t_interval([70.0])
    assert (single.n, single.mean, single.sd, single.low, single.excludes_zero) == (1, 70.0, None, None, None)
    assert t_interval([]).mean is None


def test_paired_difference_uses_the_seeds_both_have():
    reference = {0: 69.0, 1: 70.0, 2: 71.0, 3: 80.0}
    noisy, seeds = paired_difference({0: 70.0, 1: 72.0, 2: 71.0}, reference)  # differences 1, 2, 0
    half = 4.302653 * 1.0 / math.sqrt(3)  # t(0.975, 2) x sd 1 / sqrt(3)
    assert seeds == [0, 1, 2] and noisy.mean == pytest.approx(1.0) and noisy.sd == pytest.approx(1.0)
    assert (noisy.low, noisy.high) == pytest.approx((1.0 - half, 1.0 + half), abs=1e-5)
    assert noisy.excludes_zero is False
    clear, _ = paired_difference({0: 71.0, 1: 72.1, 2: 72.8}, reference)  # differences 2, 2.1, 1.8
    assert clear.low > 0 and clear.excludes_zero is True
    lone, seeds = paired_difference({3: 81.0, 4: 1.0}, reference)
    assert seeds == [3] and lone.mean == pytest.approx(1.0) and lone.excludes_zero is None


def test_report_lists_missing_and_unfinished_runs(digits, tmp_path):
    """Logs written by hand: one setting with two finished seeds, one with a finished, an unfinished
    and a missing seed; the single counted seed has a mean and no interval."""
    study = load_study(write_study(tmp_path / "study.yaml", digits, seeds=3))

    def log(setting, seed, top1s):
        folder = study.root / setting / f"seed_{seed}"
        folder.mkdir(parents=True)
        (folder / "log.jsonl").write_text("".join(json.dumps({"epoch": epoch, "val_top1": top1}) + "\n"
                                                  for epoch, top1 in enumerate(top1s)))

    log("baseline", 0, [40.0, 60.0, 50.0])
    log("baseline", 1, [30.0, 50.0, 70.0])
    log("mixpro", 0, [45.0, 55.0, 65.0])
    log("mixpro", 1, [20.0, 30.0])
    files = aggregate(study)
    summary = json.loads(files["json"].read_text())
    baseline, mixpro = summary["settings"]
    assert baseline["final_top1"]["n"] == 2 and baseline["final_top1"]["mean"] == pytest.approx(60.0)
    assert baseline["best_top1"]["values"] == {"0": 60.0, "1": 70.0}
    assert mixpro["final_top1"]["n"] == 1 and mixpro["final_top1"]["low"] is None
    assert mixpro["final_top1_difference"]["mean"] == pytest.approx(15.0)  # seed 0 only: 65 - 50
    assert {run["seed"]: run["why"] for run in mixpro["not_counted"]} == {
        1: "unfinished: 2 of 3 epochs logged", 2: "missing: never started"}
    assert [run["seed"] for run in baseline["not_counted"]] == [2]
    report = files["markdown"].read_text()
    assert "| mixpro | 1 | 65.00 | no interval (1 seed) |" in report
    assert "| mixpro | 1 | unfinished: 2 of 3 epochs logged |" in report and "| mixpro | 2 | missing: never started |" in report
    assert "undecided: 1 paired seed, no interval" in report
    with open(files["csv"]) as handle:
        assert [(row["setting"], row["n"], row["not_counted"]) for row in csv.DictReader(handle)] == [
            ("baseline", "2", "1"), ("mixpro", "1", "2")]
    assert files["curves"].stat().st_size > 0


# (b) a killed study continues

def snapshot(folder: Path):
    return {path.name: (path.stat().st_mtime_ns, path.read_bytes()) for path in sorted(folder.iterdir())}


def test_a_killed_study_resumes_and_skips_finished_runs(digits, tmp_path):
    study_file = write_study(tmp_path / "study.yaml", digits)
    root = tmp_path / "study"
    interrupted = root / "baseline" / "seed_1"
    with open(tmp_path / "first.log", "w") as console:
        first = subprocess.Popen([sys.executable, str(STUDY), str(study_file)], stdout=console, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        # once the second run (baseline, seed 1) has logged an epoch: SIGTERM the study, as a scheduler would
        while not read_records(interrupted):
            assert first.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()
            time.sleep(0.05)
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=120) == 130
    assert "interrupted" in (tmp_path / "first.log").read_text()
    assert 1 <= len(read_records(interrupted)) < EPOCHS
    with open(interrupted / LOCK) as lock:  # the study ended its training process: nobody holds the lock
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert not (root / "mixpro").exists()
    finished = snapshot(root / "baseline" / "seed_0")
    assert len(read_records(root / "baseline" / "seed_0")) == EPOCHS
    kept = read_records(interrupted)

    # again, now two runs at once (CUDA_VISIBLE_DEVICES 0 and 1; the runs are on the CPU either way)
    write_study(study_file, digits, executor={"name": "local", "gpus": [0, 1]})
    second = study_command(study_file)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "4 runs: 1 finished (skipped), 1 to resume, 2 to start" in second.stdout
    assert snapshot(root / "baseline" / "seed_0") == finished
    resumed = read_records(interrupted)
    assert [record["epoch"] for record in resumed] == list(range(EPOCHS)) and resumed[:len(kept)] == kept
    assert resumed[len(kept)]["resumed"]["epoch"] == len(kept)
    assert (interrupted / OUTPUT).read_text().count("=== study attempt") == 2
    latest = [[line for line in (root / run / OUTPUT).read_text().splitlines() if line.startswith("=== study attempt")][-1]
              for run in ("baseline/seed_1", "mixpro/seed_0", "mixpro/seed_1")]
    assert {re.search(r"CUDA_VISIBLE_DEVICES=(\S+) ", line).group(1) for line in latest} == {"0", "1"}
    summary = json.loads((root / "study.json").read_text())
    assert [(setting["name"], setting["final_top1"]["n"], setting["not_counted"]) for setting in summary["settings"]] \
        == [("baseline", 2, []), ("mixpro", 2, [])]
    assert summary["settings"][1]["final_top1_difference"]["seeds"] == [0, 1]
    with open(root / "study.csv") as handle:
        assert [row["n"] for row in csv.DictReader(handle)] == ["2", "2"]
    report = (root / "study.md").read_text()
    assert "4 of 4 runs finished and counted" in report and "| baseline (reference) | 2 |" in report
    assert (root / "study_top1.png").stat().st_size > 0


# (c) submitit's debug executor, and a failing run that does not stop the others

def test_submitit_debug_executor_runs_the_study(digits, tmp_path):
    study_file = write_study(
        tmp_path / "study.yaml", digits, seeds=[5], reference="mixpro",
        settings=[{"name": "broken", "config": MIXPRO, "overrides": {"num_classes": 9}},
                  {"name": "mixpro", "config": MIXPRO}],
        executor={"name": "slurm", "cluster": "debug", "time": 10, "gpus_per_node": 0, "partition": "any"})
    result = study_command(study_file)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    root = tmp_path / "study"
    assert "broken seed 5: FAILED: exit status 2" in result.stdout
    assert "but --num-classes is 9" in result.stdout  # the end of its output
    assert "mixpro seed 5: finished" in result.stdout and "1 run(s) did not finish" in result.stderr
    assert len(read_records(root / "mixpro" / "seed_5")) == EPOCHS
    assert list((root / "submitit").iterdir())
    report = (root / "study.md").read_text()
    assert "| mixpro (reference) | 1 |" in report and "no interval (1 seed)" in report
    assert "| broken | 5 | unfinished: 0 of 3 epochs logged |" in report


def test_gpu_slots_follow_the_visible_gpus(digits, tmp_path, monkeypatch):
    import torch

    overrides = {"data_path": str(digits), "epochs": EPOCHS, "device": "auto"}
    study = load_study(write_study(tmp_path / "study.yaml", digits, overrides=overrides))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4, 6,7")
    assert gpu_slots(study) == ["4", "6", "7"]  # the GPUs this process was given, one run on each
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert gpu_slots(study) == ["0", "1", "2"]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert gpu_slots(study) == [None]  # one GPU: one run after another, the environment as it is
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    on_cpu = load_study(write_study(tmp_path / "study.yaml", digits, overrides={**overrides, "device": "cpu"}))
    assert gpu_slots(on_cpu) == [None]
    named = load_study(write_study(tmp_path / "study.yaml", digits, executor={"name": "local", "gpus": [2, 3]}))
    assert gpu_slots(named) == ["2", "3"]
    shared = load_study(write_study(tmp_path / "study.yaml", digits, overrides=overrides,
                                    executor={"name": "local", "runs_per_gpu": 2}))
    assert gpu_slots(shared) == ["0", "0", "1", "1", "2", "2"]  # small models: two runs on each GPU
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert gpu_slots(shared) == ["0", "0"]


# (d) bad study files

@pytest.mark.parametrize("change, message", [
    ({"settings": [{"config": BASELINE}, {"config": "configs/none.yaml"}]},
     "settings[1].config: 'configs/none.yaml' does not exist"),
    ({"reference": "cells"}, "reference: 'cells' is not a setting; settings are baseline, mixpro"),
    ({"overrides": {"mask_patch": 16}}, "overrides.mask_patch: not an option of tools/train.py (did you mean "
                                        "mask_patch_size?)"),
    ({"overrides": {"seed": 1}}, "overrides.seed: set by the study's seeds"),
    ({"settings": [{"name": "baseline", "config": BASELINE, "overrides": {"epochs": "many"}}]},
     "setting 'baseline': argument --epochs: invalid int value: 'many'"),
    ({"settings": [{"name": "baseline", "config": BASELINE, "overrides": {"pin_memory": "yes"}}]},
     "settings[0].overrides.pin_memory: 'yes' is not true or false"),
    ({"settings": [{"name": "cells", "config": BASELINE, "overrides": {"mask_patch_size": 0}}]},
     "setting 'cells': --mask-patch-size 0 must be > 0"),
    ({"config": MIXPRO, "grid": {"mask_patch_size": [8, 16]}}, "give either settings:"),
    ({"settings": None, "config": MIXPRO, "grid": {"mask_patch_size": 16}},
     "grid.mask_patch_size: 16 is not a non-empty list of values"),
    ({"settings": [{"config": BASELINE}, {"config": BASELINE}]}, "'deit_tiny_digits_baseline' names two settings"),
    ({"seeds": [0, 0]}, "seeds: [0, 0] is not a list without repeats"),
    ({"seed": 3}, "seed: unknown key (did you mean seeds?)"),
    ({"executor": {"name": "slurm", "time": 60, "partiton": "gpu"}},
     "executor.partiton: unknown key (did you mean partition?); expected one of name, cluster, time"),
    ({"executor": {"name": "slurm", "partition": "gpu"}}, "executor.time: required for slurm"),
    ({"executor": {"name": "local", "gpus": 2}}, "executor.gpus: 2 is not auto, none, or a list of GPU ids"),
    ({"overrides": {"data_path": "no/such/folder", "epochs": 3}}, "setting 'baseline': data root 'no/such/folder' "
                                                                  "does not exist"),
])
def test_a_bad_study_file_is_refused_before_any_run(change, message, digits, tmp_path):
    study_file = write_study(tmp_path / "study.yaml", digits, **change)
    with pytest.raises(UserError) as error:
        load_study(study_file)
    assert str(error.value).startswith(f"{study_file}: ") and message in str(error.value)
    assert not (tmp_path / "study").exists()


def test_the_command_prints_one_error_line(digits, tmp_path):
    study_file = write_study(tmp_path / "study.yaml", digits, reference="cells")
    result = study_command(study_file)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [f"error: {study_file}: reference: 'cells' is not a setting; settings are "
                                          f"baseline, mixpro"]
    assert not (tmp_path / "study").exists()
