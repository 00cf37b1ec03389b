# DeiT-S + linear decoder (FCNHead without convolutions: a point-wise linear layer on the patch
# tokens, upsampled bilinearly), otherwise the Segmenter recipe of the mask-transformer config.
_base_ = './segmenter_deit-s_mask_8xb2-80k_pascal-context-59-480x480.py'

model = dict(
    decode_head=dict(
        _delete_=True,
        type='FCNHead',
        in_channels=384,
        channels=384,
        num_convs=0,
        dropout_ratio=0.0,
        concat_input=False,
        num_classes=59,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)))
