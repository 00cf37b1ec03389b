"""MaskMix masks, token masks and CutMix boxes against direct, obviously-correct computations."""
import math

import pytest
import scipy.stats
import torch

from mixpro.mask import MaskMixGenerator, beta_cdf, box_mask, cutmix_box, token_mask
from mixpro.mixer import BatchMixer


def constant_pair(batch, height, width):
    ones = torch.ones(batch, 3, height, width)
    return torch.cat([ones[: batch // 2], torch.zeros_like(ones[batch // 2:])])


@pytest.mark.parametrize(
    "image_size,cell,patch",
    [((224, 224), 64, 16), ((224, 224), 32, 16), ((224, 224), 64, 32), ((96, 160), 48, 16), ((224, 224), 16, 16)],
)
def test_maskmix_patches_come_from_one_image(image_size, cell, patch):
    height, width = image_size
    mixer = BatchMixer(10, patch_size=patch, mask_patch_size=cell, maskmix_prob=1.0, partner="flip", seed=0)
    batch = 8
    images = torch.cat([torch.ones(batch // 2, 3, height, width), torch.zeros(batch // 2, 3, height, width)])
    labels = torch.arange(batch)
    for _ in range(5):
        mixed = mixer(images, labels)
        assert mixed.kind == "maskmix"
        out = mixed.images
        # Every model patch is constant: it came from one image only.
        patches = out.unfold(2, patch, patch).unfold(3, patch, patch)  # B, C, h, w, p, p
        assert torch.equal(patches.amax(dim=(-1, -2)), patches.amin(dim=(-1, -2)))
        # The first half are ones mixed with zero partners: the image mean is the kept x_a fraction.
        first = out[: batch // 2].mean(dim=(1, 2, 3))
        assert torch.equal(mixed.lam_area[: batch // 2], first)
        assert torch.equal(mixed.lam_area, mixed.mask.float().mean(dim=(1, 2, 3)))
        # Token mask is binary and equals the per-token area fraction.
        grid = (height // patch, width // patch)
        area = token_mask(mixed.mask, grid, mode="area")
        assert torch.equal(mixed.token_mask, area)
        assert set(mixed.token_mask.unique().tolist()) <= {0.0, 1.0}


def test_non_divisible_size_counts_true_area():
    # 224 px with 64-px cells: a 4x4 grid cropped to 224, so the last row and column are 32 px wide.
    generator = MaskMixGenerator(224, 64, 16)
    assert generator.grid == (4, 4)
    grid = generator(3, counts=torch.tensor([[16], [0], [1]]))
    assert grid.lam_area[:2].tolist() == [1.0, 0.0]
    assert grid.cells.view(3, -1).sum(1).tolist() == [16, 0, 1]
    row, col = grid.cells[2].nonzero()[0].tolist()
    side = lambda i: 64 if i < 3 else 32  # noqa: E731
    assert grid.lam_area[2].item() == pytest.approx(side(row) * side(col) / 224 ** 2, abs=1e-7)


def test_cell_area_by_hand():
    generator = MaskMixGenerator(224, 64, 16)
    grid = generator(64, generator=torch.Generator().manual_seed(3))
    cell_h = torch.tensor([64, 64, 64, 32], dtype=torch.float64)
    areas = cell_h[:, None] * cell_h[None, :]
    expected = (grid.cells.double() * areas).sum(dim=(1, 2)) / 224 ** 2
    assert torch.allclose(grid.lam_area.double(), expected, atol=1e-7)


def test_masked_cell_count_follows_beta_1_1():
    # floor(S * tau) with tau ~ U(0, 1) is uniform on {0, ..., S-1}.
    generator = MaskMixGenerator(224, 64, 16, beta=1.0, per_sample_ratio=True)
    draws = 32000
    grid = generator(draws, generator=torch.Generator().manual_seed(0))
    counts = grid.cells.view(draws, -1).sum(1)
    observed = torch.bincount(counts, minlength=17)
    assert observed[16] == 0
    _, p_value = scipy.stats.chisquare(observed[:16].numpy())
    assert p_value > 1e-3


def test_masked_cell_count_follows_beta_2_2():
    generator = MaskMixGenerator(224, 64, 16, beta=2.0, per_sample_ratio=True)
    draws = 32000
    grid = generator(draws, generator=torch.Generator().manual_seed(1))
    observed = torch.bincount(grid.cells.view(draws, -1).sum(1), minlength=17).numpy()
    assert observed[16] == 0
    edges = scipy.stats.beta.cdf([k / 16 for k in range(17)], 2, 2)
    expected = (edges[1:] - edges[:-1]) * draws
    _, p_value = scipy.stats.chisquare(observed[:16], expected)
    assert p_value > 1e-3


def test_per_batch_ratio_is_shared():
    generator = MaskMixGenerator(224, 64, 16, per_sample_ratio=False)
    for seed in range(5):
        grid = generator(16, generator=torch.Generator().manual_seed(seed))
        counts = grid.cells.view(16, -1).sum(1)
        assert torch.all(counts == counts[0])
        # ... but the chosen cells differ between samples (unless none or all are chosen).
        if 0 < counts[0] < 16:
            assert not torch.all(grid.cells == grid.cells[0])


@pytest.mark.parametrize("beta", [0.5, 0.8, 1.0, 2.0])
def test_beta_cdf_matches_scipy(beta):
    x = torch.linspace(0, 1, 33, dtype=torch.float64)
    expected = torch.tensor(scipy.stats.beta.cdf(x.numpy(), beta, beta))
    assert torch.allclose(beta_cdf(x, beta), expected, atol=1e-6)


def test_token_mask_grid_for_pvt():
    grid = MaskMixGenerator(224, 64, (16, 32))(4, generator=torch.Generator().manual_seed(0))
    tokens = grid.tokens(7)
    assert tokens.shape == (4, 49)
    expected = grid.pixel[:, 0, ::32, ::32].flatten(1).float()
    assert torch.equal(tokens, expected)


def test_cutmix_box_and_lambda():
    import random

    rng = random.Random(0)
    for lam in [0.0, 0.3, 0.5, 0.9, 1.0]:
        box, corrected = cutmix_box(224, lam, rng)
        y0, y1, x0, x1 = box
        mask = box_mask(224, box, 2)
        assert corrected == pytest.approx(mask.float().mean().item(), abs=1e-7)
        assert 0 <= y0 <= y1 <= 224 and 0 <= x0 <= x1 <= 224
        # Box sides follow sqrt(1 - lam) before clipping, as CutMix / timm.
        assert y1 - y0 <= int(224 * math.sqrt(1 - lam)) + 1
    box, corrected = cutmix_box((100, 200), 0.5, rng, minmax=(0.2, 0.4))
    assert 20 <= box[1] - box[0] <= 40 and 40 <= box[3] - box[2] <= 80


def test_cutmix_batch_pastes_partner_inside_box():
    mixer = BatchMixer(10, cutmix_alpha=1.0, mixup_alpha=0.0, partner="flip", seed=4)
    images = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 3, 32, 32).contiguous()
    mixed = mixer(images, torch.arange(4), kind="cutmix")
    inside = mixed.mask[0, 0] == 0
    for i in range(4):
        assert torch.all(mixed.images[i][:, inside] == 3 - i)
        assert torch.all(mixed.images[i][:, ~inside] == i)
    assert torch.allclose(mixed.lam_area, (~inside).float().mean().expand(4))


def test_bad_parameters_name_themselves():
    with pytest.raises(ValueError, match="mask_patch_size=48.*patch_size=32"):
        MaskMixGenerator(224, 48, 32)
    with pytest.raises(ValueError, match="mask_patch_size"):
        BatchMixer(10, patch_size=16, mask_patch_size=40)
    with pytest.raises(ValueError, match="beta"):
        MaskMixGenerator(224, 64, 16, beta=0)
    with pytest.raises(ValueError, match="mode"):
        token_mask(torch.ones(1, 1, 4, 4), 2, mode="bilinear")


@pytest.mark.parametrize("image_size, cell", [(32, 64), (64, 64), ((64, 48), 64)])
def test_a_single_cell_grid_is_an_error_naming_both_sizes(image_size, cell):
    """One cell is all of one image: every MaskMix batch would have lam_area 0 or 1, nothing mixed."""
    with pytest.raises(ValueError, match=f"mask_patch_size={cell} px makes a single MaskMix cell"):
        MaskMixGenerator(image_size, mask_patch_size=cell, patch_sizes=16)
    mixer = BatchMixer(10, patch_size=16, mask_patch_size=cell, maskmix_prob=0.5)
    with pytest.raises(ValueError, match="single MaskMix cell"):
        mixer.check_image_size((image_size, image_size) if isinstance(image_size, int) else image_size)


def test_two_cells_mix():
    """A 1x2 grid (64 x 96 px, 64-px cells: one whole cell and one cropped to 32 px) still mixes."""
    generator = MaskMixGenerator((64, 96), mask_patch_size=64, patch_sizes=16, per_sample_ratio=True)
    masks = generator(256, generator=torch.Generator().manual_seed(0))
    assert torch.equal(masks.lam_area, masks.pixel.float().mean(dim=(1, 2, 3)))
    # floor(2 tau) cells: 0 or 1 (2 only at tau = 1), the 1 being either the whole or the cropped cell
    assert {round(value, 6) for value in masks.lam_area.tolist()} == {0.0, round(1 / 3, 6), round(2 / 3, 6)}
