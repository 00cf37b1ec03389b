"""Export the model weights of a pretraining checkpoint (timm key names) with metadata, for transfer
(tools/convert_checkpoint.py) and evaluation (tools/robustness_report.py).

    python tools/export_checkpoint.py output/deit_small_mixpro/checkpoint_best.pth deit_small_mixpro.pth [--ema]
    python tools/export_checkpoint.py output/deit_small_mixpro/checkpoint_best.pth deit_small_mixpro.safetensors

A .safetensors output is what timm.create_model(NAME, pretrained=True, pretrained_cfg_overlay=dict(file=OUT))
reads; its metadata travels in the file's header.
"""
import argparse

from pretrain.checkpoint import export_weights
from pretrain.errors import run_tool


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a checkpoint written by tools/train.py")
    parser.add_argument("out", help="file to write: {'state_dict': ..., 'meta': {...}} (.pth), or .safetensors")
    parser.add_argument("--ema", action="store_true", help="export the EMA weights instead")
    args = parser.parse_args()
    exported = export_weights(args.checkpoint, args.out, use_ema=args.ema)
    print(f"wrote {args.out}: {len(exported['state_dict'])} tensors, {exported['meta']}")


if __name__ == "__main__":
    run_tool(main)
