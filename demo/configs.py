"""OpenMMLab configs of the demo, written next to its outputs: each takes one of the suite's real
configs (configs/segmentation, configs/detection) as ``_base_`` and overrides only what the demo
scale needs (tiny backbone, digit canvases, short schedule, CPU-friendly loaders), so what runs is
the real model, head, loss, pipeline and metric."""
from __future__ import annotations

from pathlib import Path

from .digits import CANVAS_SIZE, DIGIT_NAMES

ROOT = Path(__file__).resolve().parents[1]
SEGMENTATION_BASES = {
    "linear": ROOT / "configs" / "segmentation" / "linear_deit-s_8xb2-80k_pascal-context-59-480x480.py",
    "segmenter": ROOT / "configs" / "segmentation" / "segmenter_deit-s_mask_8xb2-80k_pascal-context-59-480x480.py",
}
DETECTION_BASE = ROOT / "configs" / "detection" / "mask-rcnn_pvt-s_fpn_1x_coco.py"

# The tiny backbones of configs/demo/_deit_tiny_digits.yaml and _pvt_tiny_digits.yaml, in mm terms.
DEIT_BACKBONE = "patch_size=8, embed_dims=64, num_layers=4, num_heads=2, mlp_ratio=4"
PVT_BACKBONE = "embed_dims=32, num_heads=[1, 2, 3, 4], num_layers=[1, 1, 1, 1], mlp_ratios=[4, 4, 4, 4]"
PVT_CHANNELS = [32, 64, 96, 128]
PVT_PRETRAIN_SIZE = 64

HEADS = {
    "linear": "in_channels=64, channels=64",
    "segmenter": "in_channels=64, channels=64, embed_dims=64, num_heads=2",
}
PALETTE = [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
           [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]]

SEGMENTATION = """# Written by the demo: {base_name} at demo scale on the digit canvases
# (Pascal Context layout; background ignored as Pascal Context 59 does; 10 digit classes).
# Whole 96-px canvases (the position embedding is resized from the 4x4 pretraining grid to 12x12);
# AdamW instead of SGD, which does not move in a few hundred iterations at this scale.
_base_ = '{base}'
crop_size = ({size}, {size})
data_root = '{data_root}'
digits = dict(classes={classes}, palette={palette})
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(img_size=crop_size, {backbone}, drop_path_rate=0.0,
                  init_cfg=dict(checkpoint='{checkpoint}')),
    decode_head=dict({head}, num_classes=10),
    test_cfg=dict(_delete_=True, mode='whole'))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=crop_size, ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=crop_size, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
dataset = dict(type='BaseSegDataset', data_root=data_root, metainfo=digits, reduce_zero_label=True,
               img_suffix='.jpg', seg_map_suffix='.png')
train_dataloader = dict(batch_size=8, num_workers=0, persistent_workers=False,
                        dataset=dict(dataset, pipeline=train_pipeline))
val_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                      dataset=dict(dataset, pipeline=test_pipeline))
test_dataloader = val_dataloader
optim_wrapper = dict(optimizer=dict(_delete_=True, type='AdamW', lr={lr}, weight_decay=0.01))
param_scheduler = [dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end={iters}, by_epoch=False)]
train_cfg = dict(max_iters={iters}, val_interval={iters})
default_hooks = dict(checkpoint=dict(interval={iters}), logger=dict(interval=20))
randomness = dict(seed={seed})
"""

DETECTION = """# Written by the demo: {base_name} at demo scale on the digit canvases (COCO layout, 10 digit classes).
_base_ = '{base}'
data_root = '{data_root}/'
digits = dict(classes={classes}, palette={palette_tuples})
model = dict(
    backbone=dict({backbone}, pretrain_img_size={pretrain_size}, drop_path_rate=0.0,
                  init_cfg=dict(checkpoint='{checkpoint}')),
    neck=dict(in_channels={channels}, out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64),
    roi_head=dict(bbox_roi_extractor=dict(out_channels=64),
                  bbox_head=dict(in_channels=64, fc_out_channels=256, num_classes=10),
                  mask_roi_extractor=dict(out_channels=64),
                  mask_head=dict(in_channels=64, conv_out_channels=64, num_classes=10)),
    # At most four digits per canvas: far fewer proposals and sampled RoIs than COCO's defaults.
    train_cfg=dict(rpn_proposal=dict(nms_pre=500, max_per_img=200), rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=200), rcnn=dict(max_per_img=20)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=({size}, {size}), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=({size}, {size}), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, metainfo=digits, pipeline=train_pipeline))
val_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, metainfo=digits, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
optim_wrapper = dict(optimizer=dict(lr={lr}))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end={warmup}),
    dict(type='MultiStepLR', begin=0, end={epochs}, by_epoch=True, milestones=[{decay_epoch}], gamma=0.1),
]
train_cfg = dict(max_epochs={epochs}, val_interval={epochs})
default_hooks = dict(checkpoint=dict(interval={epochs}), logger=dict(interval=20))
randomness = dict(seed={seed})
"""


def segmentation_config(decoder: str, data_root: Path, checkpoint: Path, out: Path, iters: int, seed: int,
                        lr: float = 1e-3) -> Path:
    """``decoder``: 'linear' or 'segmenter'."""
    base = SEGMENTATION_BASES[decoder]
    text = SEGMENTATION.format(base_name=base.name, base=base, size=CANVAS_SIZE, data_root=data_root,
                               classes=tuple(DIGIT_NAMES), palette=PALETTE, backbone=DEIT_BACKBONE,
                               checkpoint=checkpoint, head=HEADS[decoder], lr=lr, iters=iters, seed=seed)
    return _write(out, text)


def detection_config(data_root: Path, checkpoint: Path, out: Path, epochs: int, seed: int, lr: float = 1e-3,
                     warmup_iters: int = 50) -> Path:
    """Mask R-CNN + FPN on the tiny PVT; AdamW as the real config, at a higher lr for the short schedule,
    decayed 10x for the last epoch."""
    text = DETECTION.format(base_name=DETECTION_BASE.name, base=DETECTION_BASE, data_root=data_root,
                            classes=tuple(DIGIT_NAMES), palette_tuples=[tuple(c) for c in PALETTE],
                            backbone=PVT_BACKBONE, pretrain_size=PVT_PRETRAIN_SIZE, checkpoint=checkpoint,
                            channels=PVT_CHANNELS, size=CANVAS_SIZE, lr=lr, warmup=warmup_iters, epochs=epochs,
                            decay_epoch=max(epochs - 1, 1), seed=seed)
    return _write(out, text)


def _write(path: Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
