# DeiT-S + Segmenter mask transformer (2 layers) on Pascal Context, Segmenter's recipe: SGD lr 1e-3,
# poly decay over 80k iterations, batch 16 (8 GPUs x 2), resize 520 / crop 480, sliding-window test
# 480 / stride 320. Backbone: our exported (or training) checkpoint, loaded strictly.
#
# Background: PascalContextDataset59 ignores background pixels (label 255); mIoU over the 59
# classes, as Segmenter and TransMix report Pascal Context.
# Normalisation: ImageNet mean/std, what DeiT was pretrained with (mmseg's Segmenter configs use
# 127.5 for its own ViT weights).
_base_ = [
    'mmseg::_base_/models/segmenter_vit-b16_mask.py',
    'mmseg::_base_/datasets/pascal_context_59.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py',
]
custom_imports = dict(imports=['segmentation'], allow_failed_imports=False)

checkpoint = 'checkpoints/deit_small_mixpro.pth'  # tools/export_checkpoint.py output
crop_size = (480, 480)
data_preprocessor = dict(
    size=crop_size, mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        type='StrictLoadViT',
        img_size=crop_size,
        embed_dims=384,
        num_heads=6,
        patch_bias=True,  # DeiT's patch embedding has a bias; mmseg's default would drop it
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    decode_head=dict(
        type='SegmenterMaskTransformerHead',
        in_channels=384,
        channels=384,
        num_classes=59,
        num_layers=2,
        num_heads=6,
        embed_dims=384,
        dropout_ratio=0.0,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(320, 320)))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.001, momentum=0.9, weight_decay=0.0),
    clip_grad=None)
param_scheduler = [
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=80000, by_epoch=False)
]
train_dataloader = dict(batch_size=2)  # per GPU; 8 GPUs give Segmenter's batch of 16
val_dataloader = dict(batch_size=1)
