"""Test a detection and instance segmentation (mmdetection) config on mmengine's Runner.

    python tools/det_test.py CONFIG CHECKPOINT [--work-dir DIR] [--amp] [--cfg-options K=V ...]
    torchrun --nproc_per_node 8 tools/det_test.py CONFIG CHECKPOINT --launcher pytorch
"""
import detection  # noqa: F401  (registers the strict-loading backbone)
from pretrain.errors import run_tool
from transfer.runner import main

if __name__ == "__main__":
    run_tool(main, __doc__, train=False)
