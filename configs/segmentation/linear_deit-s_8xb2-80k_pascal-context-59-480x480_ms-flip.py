# Multi-scale (0.5-1.75) + flip test of linear_deit-s_8xb2-80k_pascal-context-59-480x480.py (test only).
_base_ = './linear_deit-s_8xb2-80k_pascal-context-59-480x480.py'

test_dataloader = dict(dataset=dict(pipeline={{_base_.tta_pipeline}}))
model = dict(_delete_=True, type='SegTTAModel', module={{_base_.model}})
