"""Plot pretraining logs: alpha by epoch, training loss, validation top-1 and error, one line per run.

    python tools/plot_training.py output/deit_small_transmix/log.jsonl output/deit_small_mixpro/log.jsonl --out plots/

Writes OUT/alpha.png, loss.png, top1.png and error.png.
"""
import argparse
from pathlib import Path

from pretrain.errors import run_tool
from pretrain.plots import plot_training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logs", nargs="+", type=Path, help="log.jsonl files written by tools/train.py")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    files = plot_training(args.logs, args.out)
    print("wrote " + ", ".join(str(path) for path in files.values()))


if __name__ == "__main__":
    run_tool(main)
