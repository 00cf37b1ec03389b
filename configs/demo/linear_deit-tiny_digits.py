# The Linear config of configs/segmentation at demo scale: as there, the Segmenter config with its mask
# transformer swapped for a point-wise linear decoder (FCNHead without convolutions), here on the demo's
# tiny DeiT (width 64).
_base_ = './segmenter_deit-tiny_mask_digits.py'

model = dict(
    decode_head=dict(
        _delete_=True,
        type='FCNHead',
        in_channels=64,
        channels=64,
        num_convs=0,
        dropout_ratio=0.0,
        concat_input=False,
        num_classes=10,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)))
