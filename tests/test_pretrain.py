"""Pretraining program end to end on generated image folders (CPU, tiny models)."""
import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

import pretrain.models  # noqa: F401
from mixpro import ClsAttention
from pretrain import checkpoint as ckpt
from pretrain import engine
from pretrain.builder import build_mixer
from pretrain.config import parse_args
from pretrain.data import BadImageCounter, DataLayoutError, RobustImageDataset
from pretrain.main import main

sys.path.insert(0, str(Path(__file__).parent))
from imagefolder import make_image_folder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "pretrain"

TINY_VIT = ["--model", "vit_tiny_patch16_224", "--model-kwargs", "patch_size=8", "embed_dim=32", "depth=2",
            "num_heads=2", "--input-size", "32", "--mask-patch-size", "16"]
TINY_PVT = ["--model", "pvt_tiny", "--model-kwargs", "embed_dims=(16,32,32,64)", "num_heads=(1,1,2,2)",
            "depths=(1,1,1,1)", "mlp_ratios=(2,2,2,2)", "--input-size", "64", "--mask-patch-size", "32"]
FAST = ["--num-classes", "4", "--batch-size", "8", "--warmup-epochs", "0", "--lr-base-batch", "0", "--lr", "2e-3",
        "--auto-augment", "", "--reprob", "0", "--color-jitter", "0", "--workers", "0", "--device", "cpu",
        "--amp", "none", "--print-freq", "4", "--eval-crop-pct", "1.0", "--drop-path", "0.0"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("imagenet"), size=40)


def run(recipe, arch, data_root, out, *extra):
    args = ["--config", str(CONFIGS / f"deit_small_{recipe}.yaml"), "--data-path", str(data_root),
            "--output-dir", str(out), *arch, *FAST, *extra]
    main(parse_args(args))
    return [json.loads(line) for line in (Path(out) / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("recipe", ["baseline", "transmix", "mixpro"])
@pytest.mark.parametrize("arch", [TINY_VIT, TINY_PVT], ids=["vit", "pvt"])
def test_recipes_train_and_learn(recipe, arch, data_root, tmp_path):
    log = run(recipe, arch, data_root, tmp_path, "--epochs", "3")
    assert [row["epoch"] for row in log] == [0, 1, 2]
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    assert log[-1]["val_loss"] < math.log(4)  # better than chance on 4 balanced classes
    assert log[-1]["val_images"] == 32
    config = (tmp_path / "config.yaml").read_text()
    assert f"recipe: {recipe}" in config and (tmp_path / "args.yaml").read_text() == config
    with open(tmp_path / "summary.csv") as handle:  # timm's summary, one row per epoch
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["epoch", "train_loss", "eval_loss", "eval_top1", "eval_top5", "lr"]
    assert [float(row["eval_top1"]) for row in rows] == [row["val_top1"] for row in log]
    assert [float(row["lr"]) for row in rows] == [row["train_lr"] for row in log]
    if recipe == "mixpro":
        assert any("train_alpha_mean" in row for row in log)
    else:
        assert all(row["train_share_maskmix"] == 0 for row in log)
    for name in (ckpt.LAST, ckpt.BEST):
        state = torch.load(tmp_path / name, map_location="cpu", weights_only=True)
        assert state["config"]["recipe"] == recipe


def test_mixing_stops_at_mixup_off_epoch(data_root, tmp_path):
    log = run("mixpro", TINY_VIT, data_root, tmp_path, "--epochs", "3", "--mixup-off-epoch", "2", "--mix-prob", "1")
    assert all(row["train_share_none"] == 0 for row in log[:2])
    assert log[2]["train_share_none"] == 1 and "train_alpha_mean" not in log[2]


def test_resume_may_switch_to_a_learnable_alpha(data_root, tmp_path):
    """An allowed change of --alpha-rule to learnable: the resumed run's alpha starts at 0.5 and trains."""
    run("mixpro", TINY_VIT, data_root, tmp_path, "--epochs", "1", "--maskmix-prob", "1")
    log = run("mixpro", TINY_VIT, data_root, tmp_path, "--epochs", "2", "--maskmix-prob", "1", "--alpha-rule",
              "learnable", "--resume", "auto", "--resume-allow-change", "alpha_rule")
    assert [row["epoch"] for row in log] == [0, 1] and "train_alpha_learned" not in log[0]
    assert log[1]["train_alpha_learned"] != 0.5 and log[1]["resumed"]["changes"]["alpha_rule"] == ["pal", "learnable"]


@pytest.mark.parametrize("pipeline, alpha_rule", [("cpu", "pal"), ("gpu", "pal"), ("cpu", "learnable"),
                                                  ("cpu", "parabolic")])
def test_kill_and_resume_is_exact(pipeline, alpha_rule, data_root, tmp_path, monkeypatch):
    # Pixel erasing on: its noise is drawn by the workers on the CPU path and on the device on the other.
    # Table 10's learnable alpha lives in the mixer's state, the parabolic one follows the epoch.
    extra = ["--epochs", "4", "--workers", "2", "--save-every", "2", "--data-pipeline", pipeline, "--reprob", "0.5",
             "--remode", "pixel", "--alpha-rule", alpha_rule, "--maskmix-prob", "1"]
    run("mixpro", TINY_VIT, data_root, tmp_path / "straight", *extra)

    real_train = engine.train_one_epoch

    def killed_in_epoch_two(*args, **kwargs):
        if args[7] == 2:
            raise KeyboardInterrupt("killed")
        return real_train(*args, **kwargs)

    monkeypatch.setattr("pretrain.main.train_one_epoch", killed_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        run("mixpro", TINY_VIT, data_root, tmp_path / "resumed", *extra)
    assert torch.load(tmp_path / "resumed" / ckpt.LAST, weights_only=True)["epoch"] == 1
    monkeypatch.setattr("pretrain.main.train_one_epoch", real_train)
    log = run("mixpro", TINY_VIT, data_root, tmp_path / "resumed", *extra, "--resume", "auto")

    assert [row["epoch"] for row in log] == [0, 1, 2, 3]
    straight = torch.load(tmp_path / "straight" / ckpt.LAST, weights_only=True)
    resumed = torch.load(tmp_path / "resumed" / ckpt.LAST, weights_only=True)
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    for index, moments in straight["optimizer"]["state"].items():
        assert all(torch.equal(value, resumed["optimizer"]["state"][index][name]) for name, value in moments.items())
    assert straight["optimizer"]["param_groups"] == resumed["optimizer"]["param_groups"]
    assert straight["step"] == resumed["step"] and straight["mixer"] == resumed["mixer"]
    if alpha_rule == "learnable":  # optimised with the model and logged
        learned = [row["train_alpha_learned"] for row in log]
        assert learned[0] != 0.5 and len(set(learned)) == 4
        assert straight["mixer"][0]["alpha_logit"] != 0.0
    if alpha_rule == "parabolic":
        assert [row["train_alpha_mean"] for row in log] == pytest.approx([0.0, 0.0625, 0.25, 0.5625])  # (T/T_max)^2
    assert (tmp_path / "resumed" / ckpt.epoch_name(2)).is_file() and (tmp_path / "resumed" / ckpt.epoch_name(4)).is_file()


def run_command(command, env):
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_two_gloo_processes_and_accumulation_match_one(data_root, tmp_path):
    # Same global batch of 8: one process x 8, two x 4, one x 4 x 2 accumulated steps, two x 2 x 2 (DDP
    # skips the gradient exchange on the first step of each update). Random augmentation and mixing are
    # off (each process mixes its own shard), and SGD keeps float reduction-order noise from being
    # amplified the way Adam's normalisation amplifies it for near-zero gradients.
    common = ["--config", str(CONFIGS / "deit_small_baseline.yaml"), "--data-path", str(data_root), *TINY_VIT, *FAST,
              "--epochs", "2", "--no-aug", "--mixup", "0", "--cutmix", "0", "--opt", "sgd", "--lr", "0.05"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single, double = tmp_path / "single", tmp_path / "double"
    run_command([sys.executable, str(ROOT / "tools" / "train.py"), *common, "--batch-size", "8",
                 "--output-dir", str(single)], env)
    run_command([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
                 str(ROOT / "tools" / "train.py"), *common, "--batch-size", "4", "--output-dir", str(double)], env)
    accumulated, both = tmp_path / "accumulated", tmp_path / "both"
    main(parse_args([*common, "--batch-size", "4", "--grad-accum-steps", "2", "--output-dir", str(accumulated)]))
    run_command([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29518",
                 str(ROOT / "tools" / "train.py"), *common, "--batch-size", "2", "--grad-accum-steps", "2",
                 "--output-dir", str(both)], env)
    one = torch.load(single / ckpt.LAST, weights_only=True)
    log_one = [json.loads(line) for line in (single / "log.jsonl").read_text().splitlines()]
    for other, processes in ((double, 2), (accumulated, 1), (both, 2)):
        state = torch.load(other / ckpt.LAST, weights_only=True)
        assert len(state["rng"]) == processes and len(one["rng"]) == 1
        assert state["step"] == one["step"]  # as many updates, so the same lr schedule
        for key, value in one["model"].items():
            assert torch.allclose(value, state["model"][key], atol=1e-5, rtol=1e-4), (other.name, key)
        log = [json.loads(line) for line in (other / "log.jsonl").read_text().splitlines()]
        for a, b in zip(log_one, log):
            assert b["global_batch"] == 8
            assert a["train_lr"] == pytest.approx(b["train_lr"], rel=1e-9)
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
            assert a["val_top1"] == b["val_top1"] and a["val_images"] == b["val_images"] == 32


FAKE_SRUN = """#!{python}
# srun as far as tools/slurm_launch.sh needs it: --ntasks copies of the command with SLURM's variables
import os, subprocess, sys
args = sys.argv[1:]
options = {{}}
while args[0].startswith("--"):
    key, _, value = args.pop(0)[2:].partition("=")
    options[key] = value
tasks = int(options["ntasks"])
processes = [subprocess.Popen(args, env={{**os.environ, "SLURM_PROCID": str(rank), "SLURM_NTASKS": str(tasks),
                                         "SLURM_LOCALID": str(rank), "SLURM_JOB_NODELIST": "localhost",
                                         "SLURM_JOB_ID": "4242"}}) for rank in range(tasks)]
sys.exit(max(process.wait() for process in processes))
"""


def test_srun_without_torchrun_forms_one_run(data_root, tmp_path):
    """tools/slurm_train.sh through an srun stand-in: two processes with SLURM's variables and no
    torchrun form one gloo group and write one run (both ranks' random states in its checkpoint)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(FAKE_SRUN.format(python=sys.executable))
    (bin_dir / "srun").chmod(0o755)
    env = {key: value for key, value in os.environ.items() if key not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", OMP_NUM_THREADS="1", PYTHON=sys.executable)
    out = tmp_path / "run"
    run_command(["bash", str(ROOT / "tools" / "slurm_train.sh"), "debug", "mixpro", "2",
                 "--config", str(CONFIGS / "deit_small_mixpro.yaml"), "--data-path", str(data_root), *TINY_VIT, *FAST,
                 "--epochs", "1", "--batch-size", "4", "--output-dir", str(out)], env)
    state = torch.load(out / ckpt.LAST, weights_only=True)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(state["rng"]) == 2 and len(log) == 1 and log[0]["global_batch"] == 8
    assert log[0]["val_images"] == 32  # the two shards of the evaluation add up to the whole set


def test_several_processes_without_a_rank_refuse_to_start(monkeypatch):
    from pretrain.distributed import first_host, launch_environment
    from pretrain.errors import ConfigError

    for variable in ("RANK", "WORLD_SIZE", "SLURM_NTASKS", "SLURM_PROCID"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    with pytest.raises(ConfigError, match="one of 4 .*start the processes with torchrun"):
        launch_environment()
    assert [first_host(n) for n in ("gpu[03-05,09],cpu1", "node7", "a,b", "n[5]")] == ["gpu03", "node7", "a", "n5"]


def test_corrupt_jpeg_is_skipped_and_counted(data_root, tmp_path):
    root = make_image_folder(tmp_path / "data", per_class_train=6, per_class_val=2, size=40)
    good = next((root / "train" / "n01440764").glob("*.JPEG"))
    (root / "train" / "n01440764" / "zz_truncated.JPEG").write_bytes(good.read_bytes()[:300])
    (root / "train" / "n01443537" / "zz_not_an_image.JPEG").write_bytes(b"definitely not a JPEG")

    dataset = RobustImageDataset(str(root / "train"))
    index = [i for i in range(len(dataset)) if "zz_truncated" in dataset.filename(i)][0]
    image, label, bad = dataset[index]
    assert bad == 1 and image.size == (40, 40)

    log = run("baseline", TINY_VIT, root, tmp_path / "out", "--epochs", "1", "--max-bad-fraction", "0.2")
    assert log[0]["bad_images"] == 2
    with pytest.raises(RuntimeError, match="unreadable images"):
        run("baseline", TINY_VIT, root, tmp_path / "strict", "--epochs", "1", "--max-bad-fraction", "0.01")


def test_bad_data_root_shows_layout(tmp_path):
    for root in (tmp_path / "missing", tmp_path):
        with pytest.raises(DataLayoutError, match=r"train/<class>/<image>"):
            run("baseline", TINY_VIT, root, tmp_path / "out", "--epochs", "1")
    (tmp_path / "train").mkdir()
    with pytest.raises(DataLayoutError, match="no class folders"):
        run("baseline", TINY_VIT, tmp_path, tmp_path / "out", "--epochs", "1")


def test_wrong_class_count_is_a_layout_error(data_root, tmp_path):
    with pytest.raises(DataLayoutError, match="4 class folders but --num-classes is 10"):
        run("baseline", TINY_VIT, data_root, tmp_path, "--epochs", "1", "--num-classes", "10")


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(data_root, tmp_path, monkeypatch):
    real_loss = engine.soft_target_cross_entropy
    calls = {"n": 0}

    def loss_turns_nan(logits, targets):
        calls["n"] += 1
        loss = real_loss(logits, targets)
        return loss * float("nan") if calls["n"] > 12 else loss  # epoch 0 has 12 steps

    monkeypatch.setattr(engine, "soft_target_cross_entropy", loss_turns_nan)
    with pytest.raises(engine.NonFiniteLossError, match="non-finite training loss by epoch 1"):
        run("baseline", TINY_VIT, data_root, tmp_path, "--epochs", "3")
    state = torch.load(tmp_path / ckpt.LAST, weights_only=True)
    assert state["epoch"] == 0
    assert all(torch.isfinite(value).all() for value in state["model"].values())


def test_atomic_save_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint_last.pth"
    ckpt.save_atomic({"epoch": 1}, path)

    def broken_save(obj, handle):
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_atomic({"epoch": 2}, path)
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_export_loads_weights_only_into_timm(data_root, tmp_path):
    run("mixpro", TINY_PVT, data_root, tmp_path, "--epochs", "1")
    exported = ckpt.export_weights(tmp_path / ckpt.BEST, tmp_path / "pvt.pth")
    loaded = torch.load(tmp_path / "pvt.pth", map_location="cpu", weights_only=True)
    meta = loaded["meta"]
    assert meta["arch"] == "pvt_tiny" and meta["recipe"] == "mixpro" and meta["epoch"] == 1
    assert meta["top1"] == pytest.approx(json.loads((tmp_path / "log.jsonl").read_text())["val_top1"])
    model = timm.create_model(meta["arch"], num_classes=meta["num_classes"], img_size=meta["input_size"],
                              **meta["model_kwargs"])
    model.load_state_dict(loaded["state_dict"], strict=True)
    assert set(loaded["state_dict"]) == set(exported["state_dict"])
    with pytest.raises(ValueError, match="no EMA weights"):
        ckpt.export_weights(tmp_path / ckpt.BEST, tmp_path / "ema.pth", use_ema=True)


PAPER_PARAMS = {"pvt_tiny": 13.2, "pvt_small": 24.5, "pvt_medium": 44.2, "pvt_large": 61.4,
                "deit_tiny_patch16_224": 5.7, "deit_small_patch16_224": 22.1, "deit_base_patch16_224": 86.6}


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS))
def test_parameter_counts_match_paper(name):
    with torch.device("meta"):
        model = timm.create_model(name)
    millions = sum(p.numel() for p in model.parameters()) / 1e6
    assert round(millions, 1) == pytest.approx(PAPER_PARAMS[name], abs=0.051)


def test_pvt_keeps_original_key_layout():
    with torch.device("meta"):
        keys = set(timm.create_model("pvt_small").state_dict())
    for key in ("patch_embed1.proj.weight", "pos_embed4", "cls_token", "block1.0.attn.q.weight",
                "block1.0.attn.kv.weight", "block1.0.attn.sr.weight", "block4.2.attn.kv.bias", "norm.weight",
                "head.weight"):
        assert key in keys, key
    assert not any(key.startswith("patch_embed.") for key in keys)


def test_pvt_cls_attention_matches_explicit_attention():
    from test_attention import explicit_attention

    torch.manual_seed(0)
    model = timm.create_model("pvt_small").eval()
    images = torch.randn(2, 3, 224, 224)
    matrix, expected_logits = explicit_attention(model, model.block4[-1].attn, images)
    with ClsAttention(model) as probe, torch.no_grad():
        logits = model(images)
        row = probe.pop()
    assert row.shape == (2, 49) and probe.grid_size == (7, 7) and probe.patch_size == 32
    assert torch.allclose(row, matrix[:, :, 0, 1:].mean(1), atol=1e-5)
    assert torch.allclose(logits, expected_logits, atol=1e-4)


def test_pvt_mask_cells_must_be_multiples_of_32():
    config = parse_args(["--model", "pvt_tiny", "--mask-patch-size", "48", "--num-classes", "4"])
    with torch.device("meta"):
        model = timm.create_model("pvt_tiny", num_classes=4)
    with pytest.raises(ValueError, match="mask_patch_size=48.*patch_size=32"):
        build_mixer(config, model)


def test_timm_flag_names_are_aliases():
    ours = parse_args(["--config", str(CONFIGS / "deit_small_mixpro.yaml"), "--data-path", "d", "--auto-augment", "",
                       "--crop-scale", "0.5", "1", "--eval-crop-pct", "0.9", "--lr", "5e-4", "--lr-base-batch", "256",
                       "--mix-prob", "0.5", "--print-freq", "10"])
    timms = parse_args(["-c", str(CONFIGS / "deit_small_mixpro.yaml"), "--data-dir", "d", "--aa", "", "--scale", "0.5",
                        "1", "--crop-pct", "0.9", "--lr-base", "5e-4", "--lr-base-size", "256", "--mixup-prob", "0.5",
                        "--log-interval", "10"])
    assert vars(ours) == vars(timms)
    assert ours.lr_base_batch == 256 and ours.mix_prob == 0.5 and ours.print_freq == 10


def test_yaml_bases_and_overrides():
    config = parse_args(["--config", str(CONFIGS / "pvt_small_mixpro.yaml")])
    assert (config.model, config.maskmix_prob, config.maskmix_label, config.partner) == ("pvt_small", 0.5, "pal", "perm")
    assert config.lr == 1e-3 and config.lr_base_batch == 1024 and config.warmup_epochs == 20
    config = parse_args(["--config", str(CONFIGS / "deit_small_ablation_maskmix_transmix.yaml"), "--epochs", "5"])
    assert (config.cutmix, config.maskmix_label, config.epochs) == (0.0, "transmix", 5)
    for name in sorted(CONFIGS.glob("[!_]*.yaml")) + sorted((CONFIGS.parent / "demo").glob("[!_]*.yaml")):
        parse_args(["--config", str(name)])


def test_yaml_base_lists_apply_in_order():
    """``_base_: [recipe, scale]``: the later base overrides the earlier (lr, epochs), the file itself both."""
    config = parse_args(["--config", str(CONFIGS.parent / "demo" / "deit_tiny_digits_transmix.yaml")])
    assert (config.recipe, config.cutmix_label, config.maskmix_prob) == ("transmix", "transmix", 0.0)
    assert (config.lr, config.epochs, config.mask_patch_size, config.model_kwargs["patch_size"]) == (3e-3, 40, 8, 8)
    assert config.output_dir == "output/deit_tiny_digits_transmix"


def test_unknown_yaml_key_is_an_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("_base_: " + str(CONFIGS / "_mixpro.yaml") + "\nmaskmix_probability: 0.5\n")
    with pytest.raises(ValueError, match="maskmix_probability"):
        parse_args(["--config", str(bad)])


def test_tar_layout_trains(data_root, tmp_path):
    import tarfile

    for split in ("train", "val"):
        with tarfile.open(tmp_path / f"{split}.tar", "w") as tar:
            for folder in sorted((data_root / split).iterdir()):
                tar.add(folder, arcname=folder.name)
    log = run("baseline", TINY_VIT, tmp_path, tmp_path / "out", "--epochs", "1")
    assert log[0]["val_images"] == 32 and log[0]["bad_images"] == 0


def test_benchmark_mode_needs_no_data_and_writes_json(tmp_path):
    main(parse_args(["--config", str(CONFIGS / "deit_small_mixpro.yaml"), *TINY_VIT, *FAST, "--benchmark",
                     "--benchmark-steps", "3", "--benchmark-warmup", "1", "--output-dir", str(tmp_path)]))
    result = json.loads((tmp_path / "benchmark.json").read_text())
    assert result["steps"] == 3 and result["img_per_s"] > 0 and result["recipe"] == "mixpro"
    assert result["ms_per_step"] == pytest.approx(1000 * 8 / result["img_per_s"], rel=1e-6)
    assert not list(tmp_path.glob("checkpoint_*.pth"))


def test_randaugment_strongest_posterize_works():
    """rand-m9-mstd0.5-inc1 reaches magnitude 10, where PosterizeIncreasing keeps 0 bits: a black
    image with Pillow < 13 (pinned), a ValueError that kills the epoch with Pillow 13."""
    from PIL import Image
    from timm.data.auto_augment import AugmentOp

    image = Image.new("RGB", (8, 8), (200, 100, 50))
    out = AugmentOp("PosterizeIncreasing", prob=1.0, magnitude=10)(image)
    assert out.getpixel((0, 0)) == (0, 0, 0)


def test_steady_rate_leaves_the_loader_start_up_out(monkeypatch):
    """The epoch's rate counts the wait for the first batches; the steady rate starts after the first
    print window. A clock that the loader moves: 10 s to the first batch, then 1 s per batch."""
    clock = [0.0]
    monkeypatch.setattr(engine.time, "perf_counter", lambda: clock[0])
    config = parse_args(["--config", str(CONFIGS / "deit_small_baseline.yaml"), *TINY_VIT, *FAST])
    model = timm.create_model(config.model, num_classes=4, img_size=32, **config.model_kwargs)

    class Loader:
        def __len__(self):
            return 6

        def __iter__(self):
            for step in range(6):
                clock[0] += 10.0 if step == 0 else 1.0
                yield torch.randn(8, 3, 32, 32), torch.randint(0, 4, (8,)), torch.zeros(8, dtype=torch.long)

    scheduler = type("Scheduler", (), {"step_update": lambda self, num_updates: None})()
    device = torch.device("cpu")

    def epoch(print_freq):
        clock[0] = 0.0
        return engine.train_one_epoch(model, Loader(), build_mixer(config, model), torch.optim.SGD(model.parameters()),
                                      scheduler, torch.amp.GradScaler("cpu", enabled=False), device, 0,
                                      engine.StepOptions(amp="none", print_freq=print_freq),
                                      BadImageCounter(1.0, device), show_progress=False)

    stats = epoch(2)
    assert stats["train_img_per_s"] == pytest.approx(48 / 15)
    assert stats["train_img_per_s_steady"] == pytest.approx(32 / 4)  # steps 3-6, after the window ending at 11 s
    assert "train_img_per_s_steady" not in epoch(6)  # one window: nothing after it
