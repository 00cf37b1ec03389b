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

from pretrain.errors import UserError, run_tool


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("out")
    parser.add_argument("--to", choices=("mmseg", "mmdet"), required=True)
    parser.add_argument("--config", help="check the result against this config's backbone")
    args = parser.parse_args()
    try:
        if args.to == "mmseg":
            from segmentation import convert_for_mmseg as convert
        else:
            from detection import convert_for_mmdet as convert
    except ImportError as error:
        raise UserError(f"--to {args.to} needs OpenMMLab ({error}); make venv installs it") from None
    converted = convert(args.checkpoint, args.out, args.config)
    print(f"wrote {args.out}: {len(converted['state_dict'])} tensors for {args.to}"
          + (f", checked against {args.config}" if args.config else ""))


if __name__ == "__main__":
    run_tool(main)
