"""Train-step throughput per mixing policy: none, Mixup/CutMix, TransMix (explicit attention), MixPro.

One step = mix + forward + soft-target loss + backward + AdamW, on synthetic data already on the
device (no input pipeline). TransMix runs as its official code does: the last block switched to
explicit attention and the class row read from the materialised matrix. MixPro reads the same row
with fused attention kept (mixpro.ClsAttention).

    python benchmarks/bench_mixer.py                                  # DeiT-S on CUDA, a tiny ViT on CPU
    python benchmarks/bench_mixer.py --batch-size 256 --compile --out benchmarks/results/mixer.json

Prints a table (img/s, ms/step, and time/none: the step time over the step time of 'none', so above 1
means slower) and writes JSON (that ratio under the key ratio_to_none).
"""
import argparse
import functools
import json
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import timm
import torch
from tqdm import tqdm

import pretrain.models  # noqa: F401  (registers PVT v1)
from mixpro import AttentionOutput, BatchMixer, attention_site, build_mixer
from pretrain.distributed import DEVICE_HELP, resolve_device
from pretrain.engine import StepOptions, train_step
from pretrain.errors import run_tool

POLICIES = ("none", "mixup_cutmix", "transmix", "mixpro")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class ExplicitLastBlockAttention:
    """TransMix-style probe: the last block computes explicit attention and the cls row is read from
    the full (B, H, T, T) matrix, as the official TransMix/MixPro code does."""

    def __init__(self, model: torch.nn.Module) -> None:
        attn = attention_site(model).attention
        attn.fused_attn = False
        self.prefix = model.num_prefix_tokens
        self.last = None
        self._handle = attn.attn_drop.register_forward_hook(self._record)

    def _record(self, module, inputs, output) -> None:
        self.last = inputs[0][:, :, 0, self.prefix:].float().mean(1)

    def pop(self) -> torch.Tensor:
        attn, self.last = self.last, None
        return attn


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="timm model (default: deit_small_patch16_224 on CUDA, "
                                                      "a 4-block 96-px ViT on CPU)")
    parser.add_argument("--input-size", type=int, default=224, help="image size (with --model or on CUDA)")
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument("--batch-size", type=int, default=None, help="default: 128 on CUDA, 16 on CPU")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per policy (default 50 CUDA, 5 CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 15 CUDA, 2 CPU)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per policy, interleaved; median kept")
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    parser.add_argument("--amp", choices=("bf16", "fp16", "none"), default=None, help="default bf16 on CUDA")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--compile-mode", default="default", choices=COMPILE_MODES,
                        help="torch.compile mode; reduce-overhead replays CUDA graphs (no per-kernel launch cost)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--sync-debug", action="store_true",
                        help="fail on any host-device synchronisation inside the timed steps (CUDA)")
    parser.add_argument("--out", default=None, help="JSON file to write (default: print only)")
    args = parser.parse_args(argv)
    args.device = resolve_device(args.device)
    return args


def resolve_model(args: argparse.Namespace) -> tuple:
    """(timm name, create_model kwargs): DeiT-S on CUDA, a 4-block ViT-Tiny at 96 px on CPU."""
    if args.model is not None:
        return args.model, {"img_size": args.input_size}
    if args.device.type == "cuda":
        return "deit_small_patch16_224", {"img_size": args.input_size}
    return "vit_tiny_patch16_224", {"img_size": 96, "depth": 4}


def make_mixer(policy: str, patch_size: int) -> BatchMixer:
    kwargs = {"seed": 0}
    if policy in ("transmix", "mixpro"):
        kwargs["patch_size"] = patch_size
    return build_mixer(policy, 1000, **kwargs)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = args.device
    on_cuda = device.type == "cuda"
    batch_size = args.batch_size or (128 if on_cuda else 16)
    steps = args.steps or (50 if on_cuda else 5)
    warmup = args.warmup if args.warmup is not None else (15 if on_cuda else 2)
    amp = args.amp or ("bf16" if on_cuda else "none")
    options = StepOptions(amp=amp)
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    model_name, model_kwargs = resolve_model(args)
    runners = {}
    # Bars for the loops that take seconds on a CPU, minutes when compiling; they update between
    # steps (warm-up) and between timed rounds, never inside a timed round.
    warming = tqdm(total=len(args.policies) * warmup, desc="warm-up", unit="step")
    for policy in args.policies:
        warming.set_postfix_str(policy)
        model = timm.create_model(model_name, num_classes=1000, **model_kwargs).to(device)
        if args.channels_last:
            model = model.to(memory_format=torch.channels_last)
        patch = attention_site(model).patch_size
        size = (model_kwargs["img_size"],) * 2
        mixer = make_mixer(policy, patch)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05, fused=on_cuda)
        scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
        run_model = model
        if policy == "transmix":
            run_model = AttentionOutput(model, ExplicitLastBlockAttention(model))
        elif mixer.uses_attention:
            run_model = AttentionOutput(model)
        if args.compile:
            run_model = torch.compile(run_model, mode=args.compile_mode)
        step = functools.partial(train_step, run_model, mixer=mixer, optimizer=optimizer, scaler=scaler, device=device,
                                 options=options)
        images = torch.randn(batch_size, 3, *size, device=device)
        if args.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = torch.randint(0, 1000, (batch_size,), device=device)
        for _ in range(warmup):
            step(images, labels)
            warming.update()
        synchronize(device)
        runners[policy] = (step, images, labels)
    warming.close()

    times = {policy: [] for policy in args.policies}
    timing = tqdm(total=args.repeats * len(runners) * steps, desc="timed", unit="step")
    for _ in range(args.repeats):
        for policy, (step, images, labels) in runners.items():
            timing.set_postfix_str(policy)
            synchronize(device)
            if args.sync_debug and on_cuda:
                torch.cuda.set_sync_debug_mode("error")
            start = time.perf_counter()
            for _ in range(steps):
                step(images, labels)
            if args.sync_debug and on_cuda:
                torch.cuda.set_sync_debug_mode("default")
            synchronize(device)
            times[policy].append((time.perf_counter() - start) / steps)
            timing.update(steps)
    timing.close()

    results = []
    base = sorted(times["none"])[len(times["none"]) // 2] if "none" in times else None
    for policy in args.policies:
        step_time = sorted(times[policy])[len(times[policy]) // 2]
        results.append({
            "policy": policy,
            "ms_per_step": 1000 * step_time,
            "img_per_s": batch_size / step_time,
            "ratio_to_none": step_time / base if base else None,
            "all_ms_per_step": [1000 * t for t in times[policy]],
        })
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": model_name, "model_kwargs": model_kwargs, "device": torch.cuda.get_device_name(device) if on_cuda else platform.processor() or "cpu",
        "batch_size": batch_size, "steps": steps, "warmup": warmup, "repeats": args.repeats, "amp": amp,
        "compile": args.compile, "compile_mode": args.compile_mode if args.compile else None,
        "channels_last": args.channels_last, "torch": torch.__version__, "timm": timm.__version__,
        "cuda": torch.version.cuda if on_cuda else None,
        "results": results,
    }
    mode = f"compiled ({args.compile_mode})" if args.compile else "eager"
    print(f"{model_name} {model_kwargs or ''} batch {batch_size} {amp} {mode} on {report['device']}")
    print(f"{'policy':<14}{'img/s':>10}{'ms/step':>10}{'time/none':>11}")
    for row in results:
        ratio = f"{row['ratio_to_none']:.3f}" if row["ratio_to_none"] else "-"
        print(f"{row['policy']:<14}{row['img_per_s']:>10.1f}{row['ms_per_step']:>10.2f}{ratio:>11}")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {out}")
    return report


if __name__ == "__main__":
    run_tool(main)
