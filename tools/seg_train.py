"""Train a semantic segmentation (mmsegmentation) config on mmengine's Runner.

    python tools/seg_train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--cfg-options K=V ...]
    torchrun --nproc_per_node 8 tools/seg_train.py CONFIG --launcher pytorch
"""
import segmentation  # noqa: F401  (registers the strict-loading backbone)
from pretrain.errors import run_tool
from transfer.runner import main

if __name__ == "__main__":
    run_tool(main, __doc__, train=True)
