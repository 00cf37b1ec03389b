"""Where a mixing policy's extra step time goes: CUDA kernel launches and host time per step.

Profiles a few training steps of tools/bench_mixer.py's step per policy and prints, per step, the
number of kernels launched on the device and the host time spent in the mixer (mixing and labels).

    PYTHONPATH=. python benchmarks/profile_step.py [--batch-size 128] [--model deit_small_patch16_224]
"""
import argparse
import importlib.util
import time
from pathlib import Path

import timm
import torch
from torch.profiler import ProfilerActivity, profile

spec = importlib.util.spec_from_file_location("bench_mixer", Path(__file__).parents[1] / "tools" / "bench_mixer.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="deit_small_patch16_224")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    device = torch.device("cuda")
    print(f"{'policy':<14}{'kernels/step':>14}{'mixer host ms':>15}{'labels host ms':>16}")
    for policy in bench.POLICIES:
        torch.manual_seed(0)
        model = timm.create_model(args.model, num_classes=1000).to(device)
        mixer = bench.make_mixer(policy, bench.attention_site(model).patch_size)
        run_model = model
        if policy == "transmix":
            run_model = bench.AttentionOutput(model, bench.ExplicitLastBlockAttention(model))
        elif mixer.uses_attention:
            run_model = bench.AttentionOutput(model)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
        images = torch.randn(args.batch_size, 3, 224, 224, device=device)
        labels = torch.randint(0, 1000, (args.batch_size,), device=device)
        mix_time = label_time = 0.0

        def step():
            nonlocal mix_time, label_time
            start = time.perf_counter()
            batch = mixer(images, labels)
            mix_time += time.perf_counter() - start
            with torch.autocast("cuda", dtype=torch.bfloat16):
                output = run_model(batch.images)
            start = time.perf_counter()
            logits, attn = output if isinstance(output, tuple) else (output, None)
            targets = mixer.targets(batch, logits, attn)
            loss = bench.soft_target_cross_entropy(logits, targets)
            label_time += time.perf_counter() - start
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        for _ in range(5):
            step()
        torch.cuda.synchronize()
        mix_time = label_time = 0.0
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(args.steps):
                step()
            torch.cuda.synchronize()
        kernels = sum(event.count for event in prof.key_averages() if event.device_type.name == "CUDA")
        print(f"{policy:<14}{kernels / args.steps:>14.0f}{1000 * mix_time / args.steps:>15.3f}"
              f"{1000 * label_time / args.steps:>16.3f}")


if __name__ == "__main__":
    main()
