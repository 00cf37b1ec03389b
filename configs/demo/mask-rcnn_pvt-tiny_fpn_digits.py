# The Mask R-CNN config of configs/detection at demo scale, on the digit canvases `make demo` writes
# (COCO layout, 10 digit classes). The backbone is the tiny PVT v1 of _pvt_tiny_digits.yaml (stage
# widths 32-64-96-128, one block per stage, pretrained at 64 px); StrictLoadPVT refuses a checkpoint of
# any other shape. AdamW as the real config, at a higher lr for the short schedule, decayed 10x for the
# last epoch. The demo sets the data root, checkpoint, epochs and seed with --cfg-options (README.md).
_base_ = '../detection/mask-rcnn_pvt-s_fpn_1x_coco.py'

data_root = 'demo_output/data/coco/'
epochs = 2
digits = dict(classes=('0', '1', '2', '3', '4', '5', '6', '7', '8', '9'),
              palette=[(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
                       (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)])
model = dict(
    backbone=dict(embed_dims=32, num_heads=[1, 2, 3, 4], num_layers=[1, 1, 1, 1], mlp_ratios=[4, 4, 4, 4],
                  pretrain_img_size=64, drop_path_rate=0.0,
                  init_cfg=dict(checkpoint='demo_output/checkpoints/pvt_tiny_digits_mixpro.pth')),
    neck=dict(in_channels=[32, 64, 96, 128], out_channels=64),
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
    dict(type='Resize', scale=(96, 96), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(96, 96), keep_ratio=True),
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
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', begin=0, end=epochs, by_epoch=True, milestones=[epochs - 1], gamma=0.1),
]
train_cfg = dict(max_epochs=epochs, val_interval=epochs)
default_hooks = dict(checkpoint=dict(interval=epochs), logger=dict(interval=20))
randomness = dict(seed=0)
