"""Converters: our checkpoints in mmseg's ViT and mmdet's PVT compute the same features as ours."""
import pytest
import timm
import torch

import pretrain.models  # noqa: F401
from detection import StrictLoadPVT, pvt_v1_to_mmdet
from pretrain.checkpoint import CheckpointMismatchError, save_atomic
from segmentation import StrictLoadViT, timm_vit_to_mmseg

VIT_S = dict(img_size=224, patch_size=16, embed_dims=384, num_layers=12, num_heads=6, mlp_ratio=4, qkv_bias=True,
             with_cls_token=True, final_norm=True, patch_bias=True, norm_cfg=dict(type="LN", eps=1e-6),
             out_indices=(11,), interpolate_mode="bicubic")
PVT_S = dict(pretrain_img_size=224, embed_dims=64, num_layers=[3, 4, 6, 3], num_heads=[1, 2, 5, 8],
             mlp_ratios=[8, 8, 4, 4], sr_ratios=[8, 4, 2, 1], qkv_bias=True, drop_path_rate=0.0,
             norm_cfg=dict(type="LN", eps=1e-6))


def export(tmp_path, model, arch, name="model.pth"):
    path = tmp_path / name
    save_atomic({"state_dict": model.state_dict(), "meta": {"arch": arch, "recipe": "mixpro"}}, path)
    return path


def pretrained(backbone_class, config, path):
    """The backbone built with ``config`` and initialised from ``path`` through its own loader."""
    backbone = backbone_class(**config, init_cfg=dict(type="Pretrained", checkpoint=str(path)))
    backbone.init_weights()
    return backbone


def test_deit_small_features_match_mmseg(tmp_path):
    torch.manual_seed(0)
    deit = timm.create_model("deit_small_patch16_224").eval()
    path = export(tmp_path, deit, "deit_small_patch16_224")
    backbone = pretrained(StrictLoadViT, VIT_S, path)
    backbone.eval()  # mmseg's ViT.train() does not return the module
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        ours = deit.forward_features(images)[:, 1:].reshape(2, 14, 14, 384).permute(0, 3, 1, 2)
        theirs = backbone(images)[0]
    assert theirs.shape == ours.shape
    assert torch.allclose(theirs, ours, atol=1e-4)


def test_pvt_small_stages_match_mmdet(tmp_path):
    torch.manual_seed(0)
    pvt = timm.create_model("pvt_small").eval()
    path = export(tmp_path, pvt, "pvt_small")
    backbone = pretrained(StrictLoadPVT, PVT_S, path)
    backbone.eval()  # nor does mmdet's PVT.train()
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        ours = pvt.forward_pyramid(images)
        theirs = backbone(images)
    assert len(theirs) == 4
    for stage, (a, b) in enumerate(zip(ours, theirs)):
        assert a.shape == b.shape, stage
        assert torch.allclose(a, b, atol=1e-4), stage


def test_mmseg_pos_embed_is_resized_to_the_crop(tmp_path):
    torch.manual_seed(0)
    deit = timm.create_model("deit_small_patch16_224")
    path = export(tmp_path, deit, "deit_small_patch16_224")
    backbone = pretrained(StrictLoadViT, {**VIT_S, "img_size": (480, 480)}, path)
    assert backbone.pos_embed.shape == (1, 30 * 30 + 1, 384)
    assert torch.equal(backbone.pos_embed[:, 0], deit.pos_embed[:, 0])
    assert torch.equal(backbone.patch_embed.projection.bias, deit.patch_embed.proj.bias)


def test_missing_and_unused_keys_are_listed(tmp_path):
    deit = timm.create_model("deit_small_patch16_224")
    weights = deit.state_dict()
    del weights["blocks.3.mlp.fc1.bias"]
    path = tmp_path / "broken.pth"
    save_atomic({"state_dict": weights, "meta": {"arch": "deit_small_patch16_224"}}, path)
    # mmseg's default ViT has no patch bias: the converter reports it as unused instead of dropping it.
    with pytest.raises(CheckpointMismatchError) as error:
        pretrained(StrictLoadViT, {**VIT_S, "patch_bias": False}, path)
    message = str(error.value)
    assert "missing (1): layers.3.ffn.layers.0.0.bias" in message
    assert "unused (1): patch_embed.projection.bias" in message


def test_wrong_architecture_is_a_clear_error(tmp_path):
    pvt_path = export(tmp_path, timm.create_model("pvt_tiny"), "pvt_tiny", "pvt.pth")
    with pytest.raises(CheckpointMismatchError, match="holds a pvt_tiny model.*DeiT/ViT"):
        pretrained(StrictLoadViT, VIT_S, pvt_path)
    deit_path = export(tmp_path, timm.create_model("deit_tiny_patch16_224"), "deit_tiny_patch16_224", "deit.pth")
    with pytest.raises(CheckpointMismatchError, match="holds a deit_tiny_patch16_224 model.*PVT v1"):
        pretrained(StrictLoadPVT, PVT_S, deit_path)
    # Right family, wrong size: shapes do not fit, and the error says which.
    small = export(tmp_path, timm.create_model("deit_tiny_patch16_224"), "deit_small_patch16_224", "lie.pth")
    with pytest.raises(CheckpointMismatchError, match="shape mismatch"):
        pretrained(StrictLoadViT, VIT_S, small)
    with pytest.raises(CheckpointMismatchError, match="not a timm DeiT/ViT"):
        timm_vit_to_mmseg({"foo": torch.zeros(1)})
    with pytest.raises(CheckpointMismatchError, match="not a PVT v1"):
        pvt_v1_to_mmdet({"foo": torch.zeros(1)})


def test_training_checkpoint_is_accepted(tmp_path):
    torch.manual_seed(0)
    pvt = timm.create_model("pvt_tiny")
    path = tmp_path / "checkpoint_last.pth"
    save_atomic({"model": pvt.state_dict(), "config": {"model": "pvt_tiny", "recipe": "transmix", "num_classes": 1000,
                                                            "input_size": 224}, "epoch": 3}, path)
    backbone = pretrained(StrictLoadPVT, {**PVT_S, "num_layers": [2, 2, 2, 2]}, path)
    merged = torch.cat([pvt.block1[0].attn.q.weight, pvt.block1[0].attn.kv.weight])
    assert torch.equal(backbone.layers[0][1][1].attn.attn.in_proj_weight, merged)


def test_convert_cli_output_loads_into_stock_mmdet_pvt(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from mmdet.models.backbones import PyramidVisionTransformer

    root = Path(__file__).resolve().parents[1]
    tool = [sys.executable, str(root / "tools" / "convert_checkpoint.py")]
    source = export(tmp_path, timm.create_model("pvt_small"), "pvt_small")
    out = tmp_path / "pvt_mmdet.pth"
    subprocess.run([*tool, "--to", "mmdet", str(source), str(out), "--config",
                    str(root / "configs" / "detection" / "mask-rcnn_pvt-s_fpn_1x_coco.py")], check=True,
                   capture_output=True, timeout=300)
    stock = PyramidVisionTransformer(**PVT_S, convert_weights=False)
    stock.load_state_dict(torch.load(out, weights_only=True)["state_dict"], strict=True)
    failed = subprocess.run([*tool, "--to", "mmseg", str(source), str(tmp_path / "x.pth")], capture_output=True,
                            text=True, timeout=300)
    assert failed.returncode != 0 and "error: not a timm DeiT/ViT checkpoint" in failed.stderr
