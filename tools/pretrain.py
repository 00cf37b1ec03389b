"""ImageNet pretraining (DeiT / PVT x baseline / TransMix / MixPro).

    python tools/pretrain.py --config configs/pretrain/deit_small_mixpro.yaml --data-path /data/imagenet
    torchrun --nproc_per_node 8 tools/pretrain.py --config ... --data-path ...   (see tools/dist_pretrain.sh)

Every option: python tools/pretrain.py --help
"""
import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow the package.
sys.path[0] = str(Path(__file__).resolve().parents[1])

from pretrain.config import parse_args  # noqa: E402
from pretrain.main import main  # noqa: E402

if __name__ == "__main__":
    main(parse_args())
