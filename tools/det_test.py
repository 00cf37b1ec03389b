"""Test a detection and instance segmentation (mmdetection) config on mmengine's Runner.

    python tools/det_test.py CONFIG CHECKPOINT [--work-dir DIR] [--amp] [--cfg-options K=V ...]
    torchrun --nproc_per_node 8 tools/det_test.py CONFIG CHECKPOINT --launcher pytorch
"""
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # else tools/pretrain.py shadows the package

import detection  # noqa: E402,F401  (registers the strict-loading backbone)
from pretrain.mmrunner import main  # noqa: E402

if __name__ == "__main__":
    main(__doc__, train=False)
