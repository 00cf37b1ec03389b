"""Patch dropping: exact counts, zeros before normalisation, untouched pixels, complementary sets."""
import pytest
import torch

from robustness.occlusion import drop_patches, occlusion_variants, random_drop, salient_set


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
