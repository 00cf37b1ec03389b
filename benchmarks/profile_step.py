"""Where a mixing policy's extra step time goes: device time per step, kernel launches, host time
in the mixer, and the kernels that take the most device time.

Profiles training steps of bench_mixer.py's step per policy. Besides bench_mixer's policies,
two MixPro variants split its cost: ``mixpro_detached`` (labels from attention without gradient
through it) and ``mixpro_maskmix_only`` (every batch MaskMix with PAL labels).

    PYTHONPATH=. python benchmarks/profile_step.py [--model pvt_small] [--batch-size 256] [--compile] \
        [--policies none mixpro mixpro_detached] [--top 12] [--out FILE.json]
"""
import argparse
import json
import time
from pathlib import Path

import timm
import torch
from torch.profiler import ProfilerActivity, profile

import pretrain.models  # noqa: F401  (PVT v1 in timm's registry)
from mixpro import ClsAttention, soft_target_cross_entropy

import bench_mixer as bench  # beside this script


VARIANTS = ("mixpro_detached", "mixpro_maskmix_only")


def build(policy: str, model: torch.nn.Module):
    """(mixer, model as run) for a policy or variant."""
    patch_size = bench.attention_site(model).patch_size
    if policy == "mixpro_maskmix_only":
        mixer = bench.build_mixer("mixpro", 1000, patch_size=patch_size, maskmix_prob=1.0, seed=0)
    else:
        mixer = bench.make_mixer("mixpro" if policy == "mixpro_detached" else policy, patch_size)
    if policy == "transmix":
        return mixer, bench.AttentionOutput(model, bench.ExplicitLastBlockAttention(model))
    if policy == "mixpro_detached":
        return mixer, bench.AttentionOutput(model, ClsAttention(model, detach=True))
    if mixer.uses_attention:
        return mixer, bench.AttentionOutput(model)
    return mixer, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="deit_small_patch16_224")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--timed-steps", type=int, default=50)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--compile-mode", default="default", choices=bench.COMPILE_MODES)
    parser.add_argument("--policies", nargs="+", default=list(bench.POLICIES), choices=bench.POLICIES + VARIANTS)
    parser.add_argument("--top", type=int, default=10, help="kernels listed per policy, by device time")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    device = torch.device("cuda")
    report = {"model": args.model, "batch_size": args.batch_size, "compile": args.compile,
              "compile_mode": args.compile_mode, "torch": torch.__version__,
              "device": torch.cuda.get_device_name(), "policies": {}}
    for policy in args.policies:
        torch.manual_seed(0)
        model = timm.create_model(args.model, num_classes=1000).to(device)
        mixer, run_model = build(policy, model)
        if args.compile:
            run_model = torch.compile(run_model, mode=args.compile_mode)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
        images = torch.randn(args.batch_size, 3, 224, 224, device=device)
        labels = torch.randint(0, 1000, (args.batch_size,), device=device)
        host = {"mix": 0.0, "labels": 0.0}

        def step():
            start = time.perf_counter()
            batch = mixer(images, labels)
            host["mix"] += time.perf_counter() - start
            with torch.autocast("cuda", dtype=torch.bfloat16):
                output = run_model(batch.images)
            start = time.perf_counter()
            logits, attn = output if isinstance(output, tuple) else (output, None)
            targets = mixer.targets(batch, logits, attn)
            loss = soft_target_cross_entropy(logits, targets)
            host["labels"] += time.perf_counter() - start
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        for _ in range(20 if args.compile else 5):
            step()
        torch.cuda.synchronize()
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        for _ in range(args.timed_steps):
            step()
        end.record()
        torch.cuda.synchronize()
        ms_per_step = begin.elapsed_time(end) / args.timed_steps
        host = {"mix": 0.0, "labels": 0.0}
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(args.steps):
                step()
            torch.cuda.synchronize()
        events = [e for e in prof.key_averages() if e.device_type.name == "CUDA"]
        device_ms = sum(e.self_device_time_total for e in events) / 1000 / args.steps
        top = sorted(events, key=lambda e: e.self_device_time_total, reverse=True)[:args.top]
        entry = {"ms_per_step": ms_per_step, "img_per_s": 1000 * args.batch_size / ms_per_step,
                 "device_ms_per_step": device_ms, "kernels_per_step": sum(e.count for e in events) / args.steps,
                 "mixer_host_ms": 1000 * host["mix"] / args.steps, "labels_host_ms": 1000 * host["labels"] / args.steps,
                 "top_kernels": [{"name": e.key[:120], "ms_per_step": e.self_device_time_total / 1000 / args.steps,
                                  "calls_per_step": e.count / args.steps} for e in top]}
        report["policies"][policy] = entry
        print(f"\n{policy}: {ms_per_step:.2f} ms/step ({entry['img_per_s']:.0f} img/s), device {device_ms:.2f} ms, "
              f"{entry['kernels_per_step']:.0f} kernels, mixer host {entry['mixer_host_ms']:.2f} ms, labels host "
              f"{entry['labels_host_ms']:.2f} ms")
        for kernel in entry["top_kernels"]:
            print(f"  {kernel['ms_per_step']:8.3f} ms {kernel['calls_per_step']:6.1f}x  {kernel['name']}")
        del model, run_model, optimizer
        torch._dynamo.reset()
        torch.cuda.empty_cache()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
