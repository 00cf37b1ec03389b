"""Two training iterations and one evaluation through mmengine's Runner with the suite's real configs,
mmseg's PascalContextDataset59 + IoUMetric and mmdet's CocoDataset + CocoMetric, on tiny trees
(tests/mmtrees.py says what is real and what is generated); plus resume and input checks."""
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

import pretrain.models  # noqa: F401
from pretrain.checkpoint import save_atomic
from pretrain.errors import InputNotFoundError
from transfer.runner import last_metrics, main

sys.path.insert(0, str(Path(__file__).parent))
from mmtrees import make_coco, make_pascal_context  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SEG = ROOT / "configs" / "segmentation"
DET = ROOT / "configs" / "detection"

SEG_OVERRIDES = """
_base_ = '{base}'
crop_size = (64, 64)
data_root = '{data_root}'
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(img_size=crop_size, embed_dims=64, num_layers=2, num_heads=2, drop_path_rate=0.0,
                  init_cfg=dict(checkpoint='{checkpoint}')),
    decode_head=dict({head}),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(48, 48)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(96, 72), ratio_range=(0.8, 1.2), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(96, 72), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_iters={iters}, val_interval={iters})
default_hooks = dict(checkpoint=dict(interval=1), logger=dict(interval=1))
"""
SEGMENTER_HEAD = "in_channels=64, channels=64, embed_dims=64, num_heads=2"
LINEAR_HEAD = "in_channels=64, channels=64"


@pytest.fixture(scope="module")
def tiny_deit(tmp_path_factory):
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", img_size=64, embed_dim=64, depth=2, num_heads=2)
    path = tmp_path_factory.mktemp("ckpt") / "deit_tiny.pth"
    save_atomic({"state_dict": model.state_dict(), "meta": {"arch": "vit_tiny_patch16_224", "recipe": "mixpro"}}, path)
    return path


@pytest.fixture(scope="module")
def pascal(tmp_path_factory):
    return make_pascal_context(tmp_path_factory.mktemp("pascal"))


def cli(tool, *args):
    """Run a tools/ entry point as a user would, in its own process."""
    result = subprocess.run([sys.executable, str(ROOT / "tools" / f"{tool}.py"), *map(str, args)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def seg_config(tmp_path, base, data_root, checkpoint, head, iters):
    path = tmp_path / f"{base.stem}_tiny_{iters}.py"
    path.write_text(SEG_OVERRIDES.format(base=base, data_root=data_root, checkpoint=checkpoint, head=head,
                                         iters=iters))
    return path


@pytest.mark.parametrize("name,head", [("segmenter_deit-s_mask", SEGMENTER_HEAD), ("linear_deit-s", LINEAR_HEAD)],
                         ids=["segmenter", "linear"])
def test_segmentation_trains_evaluates_and_tests(name, head, pascal, tiny_deit, tmp_path):
    config = seg_config(tmp_path, SEG / f"{name}_8xb2-80k_pascal-context-59-480x480.py", pascal, tiny_deit, head, 2)
    work = tmp_path / "work"
    cli("seg_train", config, "--work-dir", work)
    assert (work / "iter_2.pth").is_file()
    assert 0.0 <= last_metrics(work, "mIoU")["mIoU"] <= 100.0  # the evaluation after iteration 2
    cli("seg_test", config, work / "iter_2.pth", "--work-dir", tmp_path / "test")
    assert 0.0 <= last_metrics(tmp_path / "test", "mIoU")["mIoU"] <= 100.0


def test_segmentation_resume(pascal, tiny_deit, tmp_path):
    work = tmp_path / "work"
    base = SEG / "linear_deit-s_8xb2-80k_pascal-context-59-480x480.py"
    cli("seg_train", seg_config(tmp_path, base, pascal, tiny_deit, LINEAR_HEAD, 2), "--work-dir", work)
    output = cli("seg_train", seg_config(tmp_path, base, pascal, tiny_deit, LINEAR_HEAD, 3), "--work-dir", work,
                 "--resume")
    assert "resumed" in output.lower()
    first = torch.load(work / "iter_2.pth", map_location="cpu", weights_only=False)
    state = torch.load(work / "iter_3.pth", map_location="cpu", weights_only=False)
    assert state["meta"]["iter"] == 3
    # One more iteration from the resumed weights, not a fresh start.
    assert torch.allclose(state["state_dict"]["backbone.cls_token"], first["state_dict"]["backbone.cls_token"], atol=1e-2)


def test_missing_inputs_fail_before_building(pascal, tiny_deit, tmp_path):
    base = SEG / "linear_deit-s_8xb2-80k_pascal-context-59-480x480.py"
    config = seg_config(tmp_path, base, tmp_path / "nowhere", tiny_deit, LINEAR_HEAD, 2)
    with pytest.raises(InputNotFoundError, match="train_dataloader dataset .*nowhere does not exist"):
        main("train", train=True, argv=[str(config)])
    config = seg_config(tmp_path, base, pascal, tmp_path / "missing.pth", LINEAR_HEAD, 2)
    with pytest.raises(InputNotFoundError, match="backbone checkpoint .*missing.pth does not exist"):
        main("train", train=True, argv=[str(config)])
    no_split = make_pascal_context(tmp_path / "no_split")
    (no_split / "ImageSets" / "SegmentationContext" / "train.txt").unlink()
    config = seg_config(tmp_path, base, no_split, tiny_deit, LINEAR_HEAD, 2)
    with pytest.raises(InputNotFoundError, match="train_dataloader dataset .*train.txt does not exist"):
        main("train", train=True, argv=[str(config)])
    with pytest.raises(InputNotFoundError, match="checkpoint .*absent.pth does not exist"):
        main("test", train=False, argv=[str(seg_config(tmp_path, base, pascal, tiny_deit, LINEAR_HEAD, 2)),
                                        str(tmp_path / "absent.pth")])


DET_OVERRIDES = """
_base_ = '{base}'
data_root = '{data_root}/'
model = dict(
    backbone=dict(embed_dims=16, num_heads=[1, 2, 2, 4], num_layers=[1, 1, 1, 1], mlp_ratios=[2, 2, 2, 2],
                  pretrain_img_size=64, drop_path_rate=0.0, init_cfg=dict(checkpoint='{checkpoint}')),
    neck=dict(in_channels=[16, 32, 32, 64], out_channels=32),
    rpn_head=dict(in_channels=32, feat_channels=32),
    roi_head=dict(bbox_roi_extractor=dict(out_channels=32), bbox_head=dict(in_channels=32, fc_out_channels=64),
                  mask_roi_extractor=dict(out_channels=32), mask_head=dict(in_channels=32, conv_out_channels=32)),
    test_cfg=dict(rcnn=dict(score_thr=0.0)))  # keep the untrained detector's boxes, so CocoMetric scores them
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(160, 120), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(160, 120), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, pipeline=train_pipeline, filter_cfg=dict(filter_empty_gt=False)))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=2, val_interval=2)
default_hooks = dict(logger=dict(interval=1))
"""


def test_detection_trains_and_evaluates(tmp_path):
    torch.manual_seed(0)
    pvt = timm.create_model("pvt_tiny", img_size=64, embed_dims=(16, 32, 32, 64), num_heads=(1, 2, 2, 4),
                            depths=(1, 1, 1, 1), mlp_ratios=(2, 2, 2, 2))
    checkpoint = tmp_path / "pvt_tiny.pth"
    save_atomic({"state_dict": pvt.state_dict(), "meta": {"arch": "pvt_tiny", "recipe": "mixpro"}}, checkpoint)
    coco = make_coco(tmp_path)
    config = tmp_path / "mask_rcnn_tiny.py"
    config.write_text(DET_OVERRIDES.format(base=DET / "mask-rcnn_pvt-s_fpn_1x_coco.py", data_root=coco,
                                           checkpoint=checkpoint))
    work = tmp_path / "work"
    cli("det_train", config, "--work-dir", work)
    assert (work / "epoch_2.pth").is_file()
    cli("det_test", config, work / "epoch_2.pth", "--work-dir", tmp_path / "test")
    metrics = last_metrics(tmp_path / "test", "coco/bbox_mAP")
    assert -1.0 <= metrics["coco/bbox_mAP"] <= 1.0 and -1.0 <= metrics["coco/segm_mAP"] <= 1.0
