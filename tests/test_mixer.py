"""Labels and batch policies: PAL, TransMix, area targets, policy frequencies, seeding, no host reads."""
from contextlib import contextmanager
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from timm.data.mixup import mixup_target
from timm.loss import SoftTargetCrossEntropy

from mixpro import BatchMixer, MixPro, MixupCutMix, NoMix, TransMix, build_mixer, soft_target_cross_entropy
from mixpro.label import (attention_lambda, mix_targets, pal_lambda, progressive_factor, smooth_one_hot,
                          transmix_lambda)

NUM_CLASSES = 10


def random_batch(batch=16, size=64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, size, size, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (batch,), generator=generator)
    return images, labels


def random_attention(batch, tokens, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, tokens, generator=generator).softmax(1) * 0.9


def test_area_targets_match_timm():
    labels = torch.tensor([0, 3, 9, 1])
    for lam in [0.0, 0.25, 0.7, 1.0]:
        for smoothing in [0.0, 0.1]:
            ours = mix_targets(labels, labels.flip(0), torch.full((4,), lam), NUM_CLASSES, smoothing)
            expected = mixup_target(labels, NUM_CLASSES, lam, smoothing)
            assert torch.allclose(ours, expected, atol=1e-7)


def test_soft_target_cross_entropy_matches_timm():
    logits = torch.randn(6, NUM_CLASSES)
    targets = torch.rand(6, NUM_CLASSES).softmax(1)
    assert torch.allclose(soft_target_cross_entropy(logits, targets), SoftTargetCrossEntropy()(logits, targets))
    hard = smooth_one_hot(torch.tensor([1, 2]), NUM_CLASSES)
    logits = torch.randn(2, NUM_CLASSES)
    assert torch.allclose(soft_target_cross_entropy(logits, hard), F.cross_entropy(logits, torch.tensor([1, 2])))


def test_attention_lambda_by_hand():
    attn = torch.tensor([[0.1, 0.2, 0.3, 0.2], [0.0, 0.0, 0.5, 0.5]])
    mask = torch.tensor([[1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0]])
    assert torch.allclose(attention_lambda(attn, mask), torch.tensor([0.4 / 0.8, 0.5]))
    with pytest.raises(ValueError, match="token mask"):
        attention_lambda(attn, mask[:, :3])


def test_progressive_factor_is_cosine_in_unit_interval():
    logits = torch.randn(32, NUM_CLASSES) * 5
    targets = mix_targets(torch.randint(0, 10, (32,)), torch.randint(0, 10, (32,)), torch.rand(32), NUM_CLASSES, 0.1)
    alpha = progressive_factor(logits, targets)
    probs = logits.softmax(1)
    expected = (probs * targets).sum(1) / (probs.norm(dim=1) * targets.norm(dim=1))
    assert torch.allclose(alpha, expected, atol=1e-6)
    assert torch.all((alpha >= 0) & (alpha <= 1))
    # A prediction equal to the target gives alpha = 1.
    assert torch.allclose(progressive_factor(targets.log(), targets), torch.ones(32), atol=1e-6)


@pytest.mark.parametrize("kind", ["maskmix", "cutmix"])
def test_pal_lambda_between_attention_and_area(kind):
    mixer = BatchMixer(NUM_CLASSES, patch_size=16, mask_patch_size=32, maskmix_prob=0.5, maskmix_label="pal",
                       cutmix_label="pal", seed=0)
    images, labels = random_batch()
    for seed in range(10):
        batch = mixer(images, labels, kind=kind)
        logits = torch.randn(16, NUM_CLASSES, generator=torch.Generator().manual_seed(seed)) * 3
        targets = mixer.targets(batch, logits, random_attention(16, 16, seed))
        low = torch.minimum(batch.lam_attn, batch.lam_area) - 1e-6
        high = torch.maximum(batch.lam_attn, batch.lam_area) + 1e-6
        assert torch.all((batch.lam >= low) & (batch.lam <= high))
        assert torch.all((batch.alpha >= 0) & (batch.alpha <= 1))
        assert torch.allclose(batch.lam, pal_lambda(batch.alpha, batch.lam_attn, batch.lam_area))
        assert torch.all(targets >= 0) and torch.allclose(targets.sum(1), torch.ones(16), atol=1e-6)
        expected = mix_targets(batch.y_a, batch.y_b, batch.lam, NUM_CLASSES, 0.1)
        assert torch.allclose(targets, expected)


def test_transmix_lambda_is_the_mean():
    mixer = TransMix(NUM_CLASSES, patch_size=16, seed=0)
    images, labels = random_batch()
    batch = mixer(images, labels, kind="cutmix")
    attn = random_attention(16, 16)
    targets = mixer.targets(batch, torch.randn(16, NUM_CLASSES), attn)
    lam_attn = (attn * batch.token_mask).sum(1) / attn.sum(1)
    assert torch.allclose(batch.lam, (lam_attn + batch.lam_area) / 2)
    assert torch.allclose(batch.lam, transmix_lambda(lam_attn, batch.lam_area))
    assert torch.allclose(targets.sum(1), torch.ones(16))
    # Mixup batches of TransMix keep area labels and need no attention.
    mixup = mixer(images, labels, kind="mixup")
    assert torch.allclose(mixer.targets(mixup, torch.randn(16, NUM_CLASSES)),
                          mix_targets(mixup.y_a, mixup.y_b, mixup.lam_area, NUM_CLASSES, 0.1))


def test_attention_required_for_attention_labels():
    mixer = MixPro(NUM_CLASSES, seed=0, mask_patch_size=32)
    images, labels = random_batch()
    batch = mixer(images, labels, kind="maskmix")
    with pytest.raises(ValueError, match="class-token attention"):
        mixer.targets(batch, torch.randn(16, NUM_CLASSES))


def test_mixup_is_convex_combination():
    mixer = MixupCutMix(NUM_CLASSES, partner="flip", seed=1)
    images, labels = random_batch()
    batch = mixer(images, labels, kind="mixup")
    lam = batch.lam_area[0]
    assert torch.all(batch.lam_area == lam)
    assert torch.allclose(batch.images, lam * images + (1 - lam) * images.flip(0), atol=1e-6)
    assert torch.equal(batch.y_b, labels.flip(0))


def test_policy_frequencies():
    mixer = MixPro(NUM_CLASSES, seed=0)
    images, labels = random_batch(batch=2, size=64)
    kinds = [mixer._draw_kind() for _ in range(8000)]
    share = {k: kinds.count(k) / len(kinds) for k in ("maskmix", "cutmix", "mixup")}
    # maskmix 0.5, then switch 0.5 between CutMix and Mixup; 4 sigma of a binomial at n = 8000 is < 0.023.
    assert share["maskmix"] == pytest.approx(0.5, abs=0.023)
    assert share["cutmix"] == pytest.approx(0.25, abs=0.02)
    assert share["mixup"] == pytest.approx(0.25, abs=0.02)
    assert NoMix(NUM_CLASSES)(images, labels).kind == "none"


def test_partner_permutation_pairs_labels():
    mixer = MixPro(NUM_CLASSES, partner="perm", seed=0, generator=torch.Generator().manual_seed(0))
    images = torch.arange(16.0).view(16, 1, 1, 1).expand(16, 3, 64, 64).contiguous()
    labels = torch.arange(16) % NUM_CLASSES
    batch = mixer(images, labels, kind="mixup")
    lam = batch.lam_area[0]
    partner = ((batch.images[:, 0, 0, 0] - lam * torch.arange(16.0)) / (1 - lam)).round().long()
    assert sorted(partner.tolist()) == list(range(16))
    assert torch.equal(batch.y_b, labels[partner])


def test_seeded_runs_repeat_exactly():
    images, labels = random_batch()

    def run():
        mixer = MixPro(NUM_CLASSES, mask_patch_size=32, seed=123, generator=torch.Generator().manual_seed(7))
        out = []
        for step in range(12):
            batch = mixer(images, labels)
            targets = mixer.targets(batch, torch.ones(16, NUM_CLASSES), torch.ones(16, 16))
            out.append((batch.kind, batch.images, targets))
        return out

    first, second = run(), run()
    assert [k for k, _, _ in first] == [k for k, _, _ in second]
    assert len({k for k, _, _ in first}) >= 2
    for (_, img_a, tgt_a), (_, img_b, tgt_b) in zip(first, second):
        assert torch.equal(img_a, img_b) and torch.equal(tgt_a, tgt_b)


def test_state_dict_resumes_host_draws():
    mixer = MixPro(NUM_CLASSES, seed=5)
    for _ in range(3):
        mixer._draw_kind()
    state = mixer.state_dict()
    expected = [mixer._draw_kind() for _ in range(50)]
    other = MixPro(NUM_CLASSES, seed=99)
    other.load_state_dict(state)
    assert [other._draw_kind() for _ in range(50)] == expected


def test_alpha_gradient_option():
    images, labels = random_batch()
    attn = random_attention(16, 16)
    for detach in (False, True):
        mixer = MixPro(NUM_CLASSES, seed=0, detach_alpha=detach, mask_patch_size=32)
        batch = mixer(images, labels, kind="maskmix")
        logits = torch.randn(16, NUM_CLASSES, requires_grad=True)
        mixer.targets(batch, logits, attn)
        assert batch.alpha.requires_grad is (not detach)


@contextmanager
def forbid_host_reads():
    """Any read of a tensor value on the host (item, bool, float, tolist, numpy) raises."""
    def refuse(*args, **kwargs):
        raise AssertionError("host read of a tensor value inside the mixer")

    names = ["item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__"]
    with mock.patch.multiple(torch.Tensor, **{name: refuse for name in names}):
        yield


def test_no_host_reads_in_mixing_and_labels():
    images, labels = random_batch(batch=8, size=224)
    attn = random_attention(8, 196)
    for name in ("mixpro", "transmix", "mixup_cutmix"):
        mixer = build_mixer(name, NUM_CLASSES, seed=0)
        for kind in ("maskmix", "cutmix", "mixup", "none"):
            logits = torch.randn(8, NUM_CLASSES)
            with forbid_host_reads():
                batch = mixer(images, labels, kind=kind)
                mixer.targets(batch, logits, attn)


def test_no_scalar_reads_inside_torch_ops():
    """Some torch ops read a value back internally (torch.multinomial validates its input with
    .item()); on a GPU that is a synchronisation. The profiler sees them as _local_scalar_dense."""
    from torch.profiler import ProfilerActivity, profile

    images, labels = random_batch(batch=8, size=224)
    attn = random_attention(8, 196)
    for per_sample in (False, True):
        mixer = MixPro(NUM_CLASSES, seed=0, per_sample_ratio=per_sample)
        for kind in ("maskmix", "cutmix", "mixup"):
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                batch = mixer(images, labels, kind=kind)
                mixer.targets(batch, torch.randn(8, NUM_CLASSES), attn)
            names = {event.key for event in prof.key_averages()}
            assert not names & {"aten::_local_scalar_dense", "aten::item"}, (kind, per_sample)


def test_bad_parameters_raise_value_errors_naming_them():
    cases = {
        "maskmix_prob": dict(maskmix_prob=1.5),
        "switch_prob": dict(switch_prob=-0.1),
        "mixup_alpha": dict(mixup_alpha=-1),
        "label_smoothing": dict(label_smoothing=1.0),
        "maskmix_label": dict(maskmix_label="attn"),
        "partner": dict(partner="shuffle"),
        "cutmix_minmax": dict(cutmix_minmax=(0.5, 0.2)),
        "num_classes": dict(num_classes=1),
    }
    for name, kwargs in cases.items():
        kwargs = {"num_classes": NUM_CLASSES, **kwargs}
        with pytest.raises(ValueError, match=name):
            BatchMixer(**kwargs)
    with pytest.raises(ValueError, match="unknown mixer"):
        build_mixer("cutout", NUM_CLASSES)
    mixer = MixPro(NUM_CLASSES)
    with pytest.raises(ValueError, match="labels"):
        mixer(torch.zeros(4, 3, 32, 32), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="patch_size=16"):
        mixer(torch.zeros(4, 3, 40, 40), torch.zeros(4, dtype=torch.long), kind="maskmix")


@pytest.mark.parametrize("autocast", [False, True])
def test_soft_target_cross_entropy_equals_the_explicit_sum(autocast):
    """torch's cross-entropy with probability targets, as used, equals -sum(t * log_softmax(x)) in float32,
    also when the logits come from a bf16 autocast region."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(16, NUM_CLASSES, generator=generator) * 4
    targets = torch.rand(16, NUM_CLASSES, generator=generator).softmax(1)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logits = logits @ torch.eye(NUM_CLASSES)  # bf16 under autocast
        per_sample = soft_target_cross_entropy(logits, targets, reduction="none")
        mean = soft_target_cross_entropy(logits, targets)
    explicit = -(targets * torch.log_softmax(logits.float(), dim=1)).sum(1)
    assert logits.dtype == (torch.bfloat16 if autocast else torch.float32) and per_sample.dtype == torch.float32
    assert torch.allclose(per_sample, explicit, rtol=0, atol=1e-5)
    assert torch.allclose(mean, explicit.mean(), rtol=0, atol=1e-6)
