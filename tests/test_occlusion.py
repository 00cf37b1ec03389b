"""Patch dropping: exact counts, zeros before normalisation, untouched pixels, complementary sets."""
import pytest
import torch

from robustness.occlusion import SALIENCY_LEVELS, drop_patches, occlusion_variants, random_drop, salient_set


def patch_view(images, patch=16):
    return images.unfold(2, patch, patch).unfold(3, patch, patch)  # B, C, h, w, p, p


def test_random_drop_exact_count_zeroes_and_keeps_the_rest():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 224, 224) * 0.9 + 0.05  # no zero pixel to start with
    for k in range(10):
        count = k * 196 // 10
        for per_image in (False, True):
            drop = random_drop(4, 196, count, generator, per_image)
            out = drop_patches(images, drop)
            patches = patch_view(out)
            zeroed = (patches == 0).all(dim=(1, 4, 5)).flatten(1)  # B, N
            assert torch.equal(zeroed, drop) and (zeroed.sum(1) == count).all()
            kept = ~drop.view(4, 1, 14, 14, 1, 1).expand_as(patches)
            assert torch.equal(patches[kept], patch_view(images)[kept])  # bit-identical
            if not per_image:
                assert (drop == drop[0]).all()


def test_dropping_happens_before_normalisation():
    images = torch.rand(2, 3, 32, 32)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    drop = torch.tensor([[True, False, False, False]] * 2)
    normalised = (drop_patches(images, drop) - mean) / std
    assert torch.allclose(normalised[:, :, :16, :16], (-mean / std).expand(2, 3, 16, 16))


def test_salient_sets_hold_the_mass_and_are_complementary():
    saliency = torch.tensor([[0.4, 0.3, 0.2, 0.1], [0.1, 0.1, 0.7, 0.1]])
    assert salient_set(saliency, 0.4).tolist() == [[True, False, False, False], [False, False, True, False]]
    assert salient_set(saliency, 0.7).tolist() == [[True, True, False, False], [False, False, True, False]]
    assert salient_set(saliency, 0.75)[1].sum() == 2
    images = torch.rand(2, 3, 32, 32) + 0.1
    variants = list(occlusion_variants(images, saliency, random_levels=(), saliency_levels=(0.5,)))
    (_, _, _, salient), (_, _, _, non_salient) = variants
    dropped_salient = (patch_view(salient) == 0).all(dim=(1, 4, 5)).flatten(1)
    dropped_non_salient = (patch_view(non_salient) == 0).all(dim=(1, 4, 5)).flatten(1)
    assert torch.equal(dropped_salient, ~dropped_non_salient)


def test_random_saliency_mass_share_property():
    saliency = torch.rand(8, 196).softmax(1)
    for lam in (0.1, 0.5, 0.9):
        chosen = salient_set(saliency, lam)
        mass = (saliency * chosen).sum(1)
        assert (mass >= lam - 1e-6).all()
        # Fewest patches: without its least salient member the set holds less than lambda.
        least = torch.where(chosen, saliency, torch.inf).min(1).values
        assert (mass - least < lam).all()


def reference_salient_set(saliency, lam):
    """The published rule, step by step as Naseer et al.'s evaluate.py writes it: ascending sort,
    values over the row's sum, cumulative sum above 1 - lambda, mapped back to patch order."""
    values, index = torch.sort(saliency.float())
    values = values / values.sum(dim=1, keepdim=True)
    chosen = values.cumsum(dim=1) > (1 - lam)
    back = torch.argsort(index)
    return torch.stack([chosen[row][back[row]] for row in range(chosen.shape[0])])


def test_at_lambda_one_every_patch_is_salient():
    generator = torch.Generator().manual_seed(0)
    peaked = (torch.randn(4, 196, generator=generator) * 6).softmax(1)  # DINO-like: a few patches hold the mass
    dominant = torch.full((1, 196), 1e-4 / 195)
    dominant[0, 37] = 1 - 1e-4
    uniform = torch.rand(2, 196, generator=generator).softmax(1)
    for rows in (peaked, dominant, uniform):
        assert (rows > 0).all()
        assert salient_set(rows, 1.0).all()
        assert torch.equal(salient_set(rows, 1.0), reference_salient_set(rows, 1.0))
    images = torch.rand(1, 3, 224, 224) + 0.1
    (_, _, _, salient), (_, _, _, non_salient) = occlusion_variants(images, dominant, random_levels=(),
                                                                    saliency_levels=(1.0,))
    assert (salient == 0).all() and torch.equal(non_salient, images)


def test_top_patches_just_below_a_level_take_one_more():
    # The top three patches hold 0.3 - 5e-7 of the mass: at lambda 0.3 the reference takes a fourth.
    rest = torch.linspace(1.0, 1.01, 193, dtype=torch.float64)  # distinct values: one fourth patch
    row = torch.zeros(1, 196, dtype=torch.float64)
    top = torch.tensor([5, 50, 150])
    row[0, top] = (0.3 - 5e-7) / 3
    row[0, [index for index in range(196) if index not in top]] = rest / rest.sum() * (0.7 + 5e-7)
    row = row.float()
    chosen = salient_set(row, 0.3)
    assert chosen.sum() == 4 and chosen[0, top].all() and chosen[0, 195]  # 195 holds the largest of the rest
    assert torch.equal(chosen, reference_salient_set(row, 0.3))


def test_salient_sets_equal_the_reference_rule_at_every_level():
    generator = torch.Generator().manual_seed(1)
    rows = torch.cat([(torch.randn(64, 196, generator=generator) * scale).softmax(1) for scale in (0.5, 2, 6)])
    for lam in SALIENCY_LEVELS:
        assert torch.equal(salient_set(rows, lam), reference_salient_set(rows, lam)), lam


def test_ties_are_broken_by_raster_order_with_the_reference_count():
    saliency = torch.tensor([[0.25, 0.25, 0.25, 0.25], [0.1, 0.3, 0.3, 0.3]])
    chosen = salient_set(saliency, 0.5)
    reference = reference_salient_set(saliency, 0.5)
    assert torch.equal(chosen.sum(1), reference.sum(1))
    # Among equal values the earlier patch counts as more salient, on every call.
    assert chosen.tolist() == [[True, True, False, False], [False, True, True, False]]
    assert all(torch.equal(salient_set(saliency, 0.5), chosen) for _ in range(5))


def test_variants_cover_every_level_from_one_batch():
    images = torch.rand(2, 3, 224, 224)
    out = list(occlusion_variants(images, torch.rand(2, 196), generator=torch.Generator().manual_seed(0), repeats=2))
    modes = [(mode, level, repeat) for mode, level, repeat, _ in out]
    assert len(modes) == 2 * 10 + 2 * 10
    assert ("random", 0.9, 1) in modes and ("non_salient", 1.0, 0) in modes


def test_bad_arguments():
    with pytest.raises(ValueError, match="count"):
        random_drop(2, 196, 197)
    with pytest.raises(ValueError, match="lambda"):
        salient_set(torch.rand(1, 4), 0.0)
    with pytest.raises(ValueError, match="patch_size=16"):
        drop_patches(torch.rand(1, 3, 40, 40), torch.zeros(1, 4, dtype=torch.bool))
