# Mask R-CNN + FPN with a PVT-S backbone on COCO 2017, 1x schedule (12 epochs, lr steps at 8 and 11),
# batch 16 (8 GPUs x 2), AdamW lr 2e-4, weight decay 1e-4: PVT's own Mask R-CNN recipe (mmdet 3.x
# ships only RetinaNet PVT configs). Backbone: our PVT v1 checkpoint, converted and loaded strictly.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['detection'], allow_failed_imports=False)

checkpoint = 'checkpoints/pvt_small_mixpro.pth'  # tools/export_checkpoint.py output
model = dict(
    backbone=dict(
        _delete_=True,
        type='StrictLoadPVT',
        num_layers=[3, 4, 6, 3],
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[64, 128, 320, 512]))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0002, weight_decay=0.0001))
train_dataloader = dict(batch_size=2)  # per GPU; 8 GPUs give the batch of 16
