"""Attention adapters of timm's CaiT and XCiT and of our CA-Swin against the explicit attention computed
from each model's own weights, under autocast and torch.compile, and a short MixPro pretraining run of
each."""
import json
import sys
from pathlib import Path

import pytest
import timm
import torch

import pretrain.models  # noqa: F401  (CA-Swin)

from mixpro import AttentionOutput, ClsAttention, adapter_families
from pretrain.builder import build_mixer
from pretrain.config import parse_args
from pretrain.errors import ConfigError
from pretrain.main import main as pretrain

sys.path.insert(0, str(Path(__file__).parent))
from imagefolder import make_image_folder  # noqa: E402
from test_attention import explicit_attention  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Tiny members of each family at 64 px: CaiT and XCiT with 4 x 4 tokens of 16 px and two class-attention
# blocks, CA-Swin with a 2 x 2 last stage of 32 px and its class-attention block.
FAMILIES = {
    "cait": ("cait_xxs24_224", dict(img_size=64, embed_dim=32, depth=2, num_heads=2, depth_token_only=2),
             lambda model: model.blocks_token_only[-1].attn, (4, 4), 16),
    "xcit": ("xcit_nano_12_p16_224", dict(img_size=64, embed_dim=32, depth=2, num_heads=2, cls_attn_layers=2),
             lambda model: model.cls_attn_blocks[-1].attn, (4, 4), 16),
    "ca_swin": ("ca_swin_tiny", dict(img_size=64, embed_dim=16, depths=(1, 1, 1, 2), num_heads=(1, 1, 2, 2),
                                     window_size=2), lambda model: model.class_block.attn, (2, 2), 32),
}


def tiny(family, **extra):
    name, kwargs, last_attention, _, _ = FAMILIES[family]
    torch.manual_seed(0)
    model = timm.create_model(name, **kwargs, **extra)
    if family == "ca_swin":  # a trained-looking class token: zero-mean init would hide a wrong query row
        model.cls_token.data.normal_()
    return model, last_attention


def ca_swin_explicit(model, images):
    """The CA block written out from the model's weights: attention (B, H, 1 + N) and logits."""
    block, attn = model.class_block, model.class_block.attn
    with torch.no_grad():
        tokens = model.layers(model.patch_embed(images)).flatten(1, 2)
        z = torch.cat([model.cls_token.expand(len(images), -1, -1), tokens], dim=1)
        q, k, v = attn.qkv(block.norm1(z)).view(len(images), z.shape[1], 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
        matrix = (q[:, :, :1] @ k.transpose(-2, -1) * attn.scale).softmax(-1)  # (B, H, 1, 1 + N)
        cls = z[:, :1] + attn.proj((matrix @ v).transpose(1, 2).reshape(len(images), 1, -1))
        cls = cls + block.mlp(block.norm2(cls))
        logits = model.head.fc(model.norm(torch.cat([cls, tokens], dim=1))[:, 0])
    return matrix, logits


def reference(family, model, images):
    """(attention matrix with the class row first, logits) computed explicitly, fused attention off."""
    if family == "ca_swin":
        return ca_swin_explicit(model, images)
    return explicit_attention(model, FAMILIES[family][2](model), images)


@pytest.mark.parametrize("family", FAMILIES)
def test_matches_explicit_class_attention(family):
    model, last_attention = tiny(family)
    model.eval()
    images = torch.randn(3, 3, 64, 64)
    matrix, expected_logits = reference(family, model, images)
    expected = matrix[:, :, 0, 1:].mean(1)  # the class token's row over the patch tokens, mean over heads
    if family != "ca_swin":  # CA-Swin's class attention always runs fused (scaled_dot_product_attention)
        assert last_attention(model).fused_attn  # the probe runs with fused attention on
    with ClsAttention(model) as probe, torch.no_grad():
        logits = model(images)
        attn = probe.pop()
    grid, patch = FAMILIES[family][3:]
    assert attn.shape == (3, grid[0] * grid[1]) and torch.allclose(attn, expected, atol=1e-5, rtol=0)
    assert torch.allclose(logits, expected_logits, atol=1e-4)  # the model's forward is untouched
    assert probe.grid_size == grid and probe.patch_size == patch
    with ClsAttention(model, head=1) as probe, torch.no_grad():
        model(images)
        assert torch.allclose(probe.pop(), matrix[:, 1, 0, 1:], atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_under_autocast_with_gradient(family):
    model, last_attention = tiny(family)
    images = torch.randn(2, 3, 64, 64)
    matrix, _ = reference(family, model.eval(), images)
    model.train()
    with ClsAttention(model) as probe, torch.autocast("cpu", dtype=torch.bfloat16):
        model(images)
        attn = probe.pop()
    assert attn.dtype == torch.float32 and torch.allclose(attn, matrix[:, :, 0, 1:].mean(1), atol=2e-2)
    attn.sum().backward()
    projections = ("qkv",) if family == "ca_swin" else ("q", "k")
    assert all(getattr(last_attention(model), name).weight.grad is not None for name in projections)


@pytest.mark.parametrize("family", FAMILIES)
def test_attention_output_under_torch_compile(family):
    model, _ = tiny(family)
    wrapped = AttentionOutput(model.eval())
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        eager_logits, eager_attn = wrapped(images)
        compiled_logits, compiled_attn = torch.compile(wrapped)(images)
    assert torch.allclose(compiled_attn, eager_attn, atol=1e-5)
    assert torch.allclose(compiled_logits, eager_logits, atol=1e-4)


def test_ca_swin_has_the_parameters_of_table_1():
    for name, millions in (("ca_swin_tiny", 28.3), ("ca_swin_small", 49.6)):
        with torch.device("meta"):
            model = timm.create_model(name)
        assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == millions
        assert model.patch_embed.img_size == (224, 224) and FAMILIES and len(model.layers[-1].blocks) == 1


def test_a_model_without_adapter_names_the_families():
    with pytest.raises(TypeError, match="families with one: timm VisionTransformer .*timm CaiT, timm XCiT"):
        ClsAttention(timm.create_model("resnet18"))
    assert adapter_families()[:3] == ["timm VisionTransformer (DeiT, ViT)", "timm CaiT", "timm XCiT"]
    config = parse_args(["--model", "resnet18", "--num-classes", "4"])
    with pytest.raises(ConfigError, match="no class-token attention adapter for ResNet"):
        build_mixer(config, timm.create_model("resnet18", num_classes=4))


@pytest.mark.parametrize("family", FAMILIES)
def test_mask_cells_follow_the_token_grid(family):
    name, _, _, _, patch = FAMILIES[family]
    model, _ = tiny(family, num_classes=4)
    config = parse_args(["--model", name, "--num-classes", "4", "--input-size", "64", "--mask-patch-size", "24"])
    with pytest.raises(ConfigError, match=f"mask_patch_size=24 must be a positive multiple of patch_size={patch}"):
        build_mixer(config, model)
    config = parse_args(["--model", name, "--num-classes", "4", "--input-size", "64", "--mask-patch-size", "32"])
    assert build_mixer(config, model).patch_size == patch


@pytest.mark.parametrize("family", FAMILIES)
def test_two_mixpro_epochs_log_alpha(family, tmp_path_factory):
    name, kwargs, _, _, _ = FAMILIES[family]
    data = make_image_folder(tmp_path_factory.mktemp(family), size=64, per_class_train=8, per_class_val=4)
    model_kwargs = [f"{key}={value}".replace(" ", "") for key, value in kwargs.items() if key != "img_size"]
    out = tmp_path_factory.mktemp(f"{family}_run")
    pretrain(parse_args([
        "--config", str(ROOT / "configs" / "pretrain" / "deit_small_mixpro.yaml"), "--model", name,
        "--model-kwargs", *model_kwargs, "--input-size", "64", "--mask-patch-size", "32", "--num-classes", "4",
        "--batch-size", "8", "--epochs", "2", "--warmup-epochs", "0", "--auto-augment", "", "--reprob", "0",
        "--workers", "0", "--device", "cpu", "--amp", "none", "--eval-crop-pct", "1.0", "--maskmix-prob", "1.0",
        "--data-path", str(data), "--output-dir", str(out)]))
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in log] == [0, 1]
    assert all(row["train_share_maskmix"] == 1.0 and 0.0 <= row["train_alpha_mean"] <= 1.0 for row in log)
    assert all(0.0 <= row["train_lam_attn_mean"] <= 1.0 for row in log)
