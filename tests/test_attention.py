"""ClsAttention against the explicit (non-fused) attention matrix of timm's own forward."""
import pytest
import timm
import torch

from mixpro import ClsAttention, MixPro


def explicit_attention(model, attn_module, images):
    """The full attention matrix (B, H, T, T) of ``attn_module`` as the model computes it with fused
    attention off (read from the input of its attention dropout), and the model's logits."""
    captured = {}
    handle = attn_module.attn_drop.register_forward_hook(lambda m, i, o: captured.setdefault("attn", i[0]))
    fused = attn_module.fused_attn
    attn_module.fused_attn = False
    try:
        with torch.no_grad():
            logits = model(images)
    finally:
        attn_module.fused_attn = fused
        handle.remove()
    return captured["attn"], logits


def explicit_cls_attention(model, images):
    """Last block, cls row, patch columns, mean over heads."""
    matrix, logits = explicit_attention(model, model.blocks[-1].attn, images)
    return matrix[:, :, 0, model.num_prefix_tokens:].mean(1), logits


@pytest.mark.parametrize("name,kwargs", [
    ("deit_tiny_patch16_224", {}),
    ("deit_small_patch16_224", {}),
    ("deit_tiny_distilled_patch16_224", {}),
    ("vit_small_patch16_224", {"reg_tokens": 4, "qk_norm": True, "img_size": 96}),
])
def test_matches_explicit_attention(name, kwargs):
    torch.manual_seed(0)
    model = timm.create_model(name, **kwargs).eval()
    # timm initialises q_norm/k_norm to identity; perturb them so the test sees whether they are applied.
    for module in (model.blocks[-1].attn.q_norm, model.blocks[-1].attn.k_norm):
        if hasattr(module, "weight"):
            module.weight.data.uniform_(0.5, 1.5)
    size = kwargs.get("img_size", 224)
    images = torch.randn(2, 3, size, size)
    expected, expected_logits = explicit_cls_attention(model, images)
    assert model.blocks[-1].attn.fused_attn  # the probe runs with fused attention on
    with ClsAttention(model) as probe, torch.no_grad():
        logits = model(images)
        attn = probe.pop()
    grid = model.patch_embed.grid_size
    assert attn.shape == (2, grid[0] * grid[1]) == expected.shape
    assert torch.allclose(attn, expected, atol=1e-5, rtol=0)
    assert torch.allclose(logits, expected_logits, atol=1e-4)  # the model's forward is untouched
    assert probe.grid_size == tuple(grid) and probe.patch_size == 16


def test_fused_attention_stays_on():
    model = timm.create_model("deit_tiny_patch16_224")
    before = [block.attn.fused_attn for block in model.blocks]
    with ClsAttention(model):
        model(torch.randn(1, 3, 224, 224))
        assert [block.attn.fused_attn for block in model.blocks] == before


def test_autocast_and_gradient():
    torch.manual_seed(0)
    model = timm.create_model("deit_tiny_patch16_224")
    images = torch.randn(2, 3, 224, 224)
    expected, _ = explicit_cls_attention(model.eval(), images)
    model.train()
    with ClsAttention(model) as probe, torch.autocast("cpu", dtype=torch.bfloat16):
        model(images)
        attn = probe.pop()
    assert attn.dtype == torch.float32
    assert torch.allclose(attn, expected, atol=2e-2)
    assert attn.requires_grad
    attn.sum().backward()
    assert model.blocks[-1].attn.qkv.weight.grad is not None
    with ClsAttention(model, detach=True) as probe:
        model(images)
        assert not probe.pop().requires_grad


def test_remove_and_context_manager():
    model = timm.create_model("deit_tiny_patch16_224")
    probe = ClsAttention(model)
    probe.remove()
    model(torch.randn(1, 3, 224, 224))
    assert probe.last is None
    with pytest.raises(RuntimeError, match="forward pass"):
        probe.pop()
    with ClsAttention(model) as probe:
        pass
    model(torch.randn(1, 3, 224, 224))
    assert probe.last is None
    assert len(model.blocks[-1].attn.qkv._forward_hooks) == 0


def test_unsupported_model_is_a_clear_error():
    with pytest.raises(TypeError, match="no class-token attention adapter"):
        ClsAttention(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="class token"):
        ClsAttention(timm.create_model("vit_small_patch16_224", class_token=False, global_pool="avg"))


def test_mixpro_step_end_to_end_learns_labels_with_attention():
    """One MixPro step on DeiT-T: the targets use the recorded attention and backprop reaches the model."""
    torch.manual_seed(0)
    model = timm.create_model("deit_tiny_patch16_224", num_classes=10)
    mixer = MixPro(10, seed=0)
    images, labels = torch.randn(4, 3, 224, 224), torch.randint(0, 10, (4,))
    with ClsAttention(model) as probe:
        batch = mixer(images, labels, kind="maskmix")
        logits = model(batch.images)
        targets = mixer.targets(batch, logits, probe.pop())
    assert batch.lam_attn.shape == (4,) and not torch.allclose(batch.lam_attn, batch.lam_area)
    loss = torch.sum(-targets * logits.log_softmax(1), 1).mean()
    loss.backward()
    assert model.head.weight.grad.abs().sum() > 0


def test_attention_output_under_torch_compile():
    """Compiled, the attention comes out of the graph and equals the eager one."""
    from mixpro import AttentionOutput

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, embed_dim=32,
                              num_heads=2).eval()
    wrapped = AttentionOutput(model)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        eager_logits, eager_attn = wrapped(images)
        compiled_logits, compiled_attn = torch.compile(wrapped)(images)
    assert torch.allclose(compiled_attn, eager_attn, atol=1e-5)
    assert torch.allclose(compiled_logits, eager_logits, atol=1e-4)
    assert wrapped.probe.last is None  # popped inside the forward, nothing stale left behind


def test_single_head_selection():
    torch.manual_seed(0)
    model = timm.create_model("deit_tiny_patch16_224").eval()
    images = torch.randn(2, 3, 224, 224)
    matrix, _ = explicit_attention(model, model.blocks[-1].attn, images)
    with ClsAttention(model, head=1) as probe, torch.no_grad():
        model(images)
        assert torch.allclose(probe.pop(), matrix[:, 1, 0, 1:], atol=1e-5)
