"""Convert one of our checkpoints (export, training checkpoint or timm state dict) for OpenMMLab.

    python tools/convert_checkpoint.py --to mmseg deit_small_mixpro.pth deit_small_mixpro_mmseg.pth \
        [--config configs/segmentation/segmenter_deit-s_mask_8xb2-80k_pascal-context-59-480x480.py]
    python tools/convert_checkpoint.py --to mmdet pvt_small_mixpro.pth pvt_small_mixpro_mmdet.pth \
        [--config configs/detection/mask-rcnn_pvt-s_fpn_1x_coco.py]

With --config the converted weights are checked key by key (names and shapes) against that
config's backbone; a mismatch lists every missing, unused or misshapen key. The output holds
{'state_dict': ..., 'meta': ...} for a stock mmseg VisionTransformer (init_cfg Pretrained) or a stock
mmdet PyramidVisionTransformer with convert_weights=False. The suite's own configs need no
conversion: their StrictLoadViT / StrictLoadPVT backbones read our checkpoints directly.
"""
import argparse
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # else tools/pretrain.py shadows the package

from pretrain.checkpoint import (CheckpointMismatchError, check_state_dict, load_model_weights,  # noqa: E402
                                 save_atomic)


def build_backbone(config_path: str, target: str):
    from mmengine.config import Config

    cfg = Config.fromfile(config_path)
    backbone_cfg = dict(cfg.model.backbone)
    backbone_cfg.pop("init_cfg", None)
    if target == "mmseg":
        import segmentation  # noqa: F401
        from mmseg.registry import MODELS
    else:
        import detection  # noqa: F401
        from mmdet.registry import MODELS
    return MODELS.build(backbone_cfg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("out")
    parser.add_argument("--to", choices=("mmseg", "mmdet"), required=True)
    parser.add_argument("--config", help="check the result against this config's backbone")
    args = parser.parse_args()
    try:
        convert_checkpoint(args)
    except (CheckpointMismatchError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}")


def convert_checkpoint(args: argparse.Namespace) -> None:
    weights, meta = load_model_weights(args.checkpoint)
    if args.to == "mmseg":
        from segmentation.convert import timm_vit_to_mmseg as convert
    else:
        from detection.convert import pvt_v1_to_mmdet as convert
    converted = convert(weights)
    if args.config:
        backbone = build_backbone(args.config, args.to)
        check_state_dict(converted, backbone.state_dict(), f"{args.checkpoint} -> {args.config}",
                         resizable=("pos_embed",) if args.to == "mmseg" else ())
    save_atomic({"state_dict": converted, "meta": {**meta, "converted_for": args.to}}, Path(args.out))
    print(f"wrote {args.out}: {len(converted)} tensors for {args.to}"
          + (f", checked against {args.config}" if args.config else ""))


if __name__ == "__main__":
    main()
