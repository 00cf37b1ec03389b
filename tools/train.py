"""ImageNet pretraining (DeiT / PVT x baseline / TransMix / MixPro).

    python tools/train.py --config configs/pretrain/deit_small_mixpro.yaml --data-path /data/imagenet
    torchrun --nproc_per_node 8 tools/train.py --config ... --data-path ...   (see tools/dist_train.sh)

Every option: python tools/train.py --help
"""
from pretrain.config import parse_args
from pretrain.errors import run_tool
from pretrain.main import main

if __name__ == "__main__":
    run_tool(lambda: main(parse_args()))
