# The Segmenter config of configs/segmentation at demo scale, on the digit canvases `make demo` writes
# (Pascal Context layout; background ignored as Pascal Context 59 does; 10 digit classes). The backbone
# is the tiny DeiT of _deit_tiny_digits.yaml (8-px patches, width 64, 4 blocks, 2 heads), whose 4x4
# position grid is resized to the 12x12 grid of the whole 96-px canvases; StrictLoadViT refuses a
# checkpoint of any other shape. AdamW instead of SGD, which does not move in a few hundred iterations.
# The demo sets the data root, checkpoint, iterations and seed with --cfg-options (see README.md).
_base_ = '../segmentation/segmenter_deit-s_mask_8xb2-80k_pascal-context-59-480x480.py'

crop_size = (96, 96)
data_root = 'demo_output/data/VOCdevkit/VOC2010'
iterations = 400
digits = dict(classes=('0', '1', '2', '3', '4', '5', '6', '7', '8', '9'),
              palette=[[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                       [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]])
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(img_size=crop_size, patch_size=8, embed_dims=64, num_layers=4, num_heads=2, mlp_ratio=4,
                  drop_path_rate=0.0,
                  init_cfg=dict(checkpoint='demo_output/checkpoints/deit_tiny_digits_mixpro.pth')),
    decode_head=dict(in_channels=64, channels=64, embed_dims=64, num_heads=2, num_classes=10),
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
optim_wrapper = dict(optimizer=dict(_delete_=True, type='AdamW', lr=1e-3, weight_decay=0.01))
param_scheduler = [dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=iterations, by_epoch=False)]
train_cfg = dict(max_iters=iterations, val_interval=iterations)
default_hooks = dict(checkpoint=dict(interval=iterations), logger=dict(interval=20))
randomness = dict(seed=0)
