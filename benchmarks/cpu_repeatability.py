"""Does the CPU demo repeat on another machine? Trains the demo's DeiT (MixPro) on the digits for a few
epochs in a subprocess, with the environment the demo pins (demo.pipeline.REPEATABLE_CPU) or without
it, and prints every epoch's training and validation loss to all digits, with a digest of them: run it
on two machines and compare the digests (docs/demo/repeatability.md).

    python benchmarks/cpu_repeatability.py [--epochs 2] [--unpinned] [--out RESULT.json]
"""
import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from demo import digits
from demo.pipeline import REPEATABLE_CPU

ROOT = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--unpinned", action="store_true", help="the machine's own kernels and thread count")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        data = Path(work) / "digits"
        digits.write_classification(data, 0)
        environment = {**os.environ, **({} if args.unpinned else REPEATABLE_CPU)}
        subprocess.run([sys.executable, str(ROOT / "tools" / "train.py"), "--config",
                        str(ROOT / "configs" / "demo" / "deit_tiny_digits_mixpro.yaml"), "--data-path", str(data),
                        "--output-dir", str(Path(work) / "run"), "--epochs", str(args.epochs), "--eval-every", "1",
                        "--warmup-epochs", "0"], env=environment, check=True, capture_output=True)
        records = [json.loads(line) for line in (Path(work) / "run" / "log.jsonl").read_text().splitlines()]
    losses = [(record["train_loss"], record["val_loss"]) for record in records]
    result = {"pinned": not args.unpinned, "losses": losses,
              "digest": hashlib.sha256(json.dumps(losses).encode()).hexdigest()[:16],
              "cpu": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "cores": os.cpu_count(), "torch": torch.__version__}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
