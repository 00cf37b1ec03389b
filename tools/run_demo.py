"""The whole pipeline on data that ships with the dependencies (scikit-learn's digits), on the CPU:
pretrain tiny DeiT / PVT models with the baseline, TransMix and MixPro recipes, fine-tune them for
segmentation and detection, compare their robustness, and write OUT/report.md.

    python tools/run_demo.py [--out demo_output] [--seed 0] [--quick] [--device cpu|cuda|auto] [--seeds N]

A previous demo output in OUT is removed first (nothing is reused); --quick runs a few iterations of
every stage (what the test suite checks), not the demo's numbers. --seeds N adds the digit studies of
Tables 6 and 10 over N seeds (meant for --device cuda).
"""
from demo.pipeline import main
from pretrain.errors import run_tool

if __name__ == "__main__":
    run_tool(main)
