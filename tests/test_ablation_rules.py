"""The paper's ablation rules (Tables 7-10, Fig. 5) and the official code's switches, each against a direct
computation: plain loops over small examples, pixel counts, formulas; and the defaults against draws recorded
before these options existed."""
import hashlib
import io
import math
import sys
from pathlib import Path

import pytest
import scipy.stats
import torch

from mixpro import BatchMixer, MixPro, TransMix, soft_target_cross_entropy
from mixpro.label import mix_targets
from mixpro.mask import BLOCK_PROPOSALS, BLOCK_ROUNDS, MaskMixGenerator, random_blocks, shuffle_tokens

sys.path.insert(0, str(Path(__file__).parent))
from test_mixer import forbid_host_reads  # noqa: E402

NUM_CLASSES = 10


def indexed_images(batch, size, patch):
    """Image i has the value 1000 * i + t on every pixel of its token t: any pixel tells where it came from."""
    grid = size // patch
    token = torch.arange(grid * grid, dtype=torch.float32).view(1, 1, grid, grid)
    token = token.repeat_interleave(patch, 2).repeat_interleave(patch, 3)
    image = 1000 * torch.arange(batch, dtype=torch.float32).view(-1, 1, 1, 1)
    return (token + image).expand(-1, 3, -1, -1).contiguous()


def ones_and_zeros(batch, size):
    """First half ones, second half zeros: with the flip partner, the first half's image mean is lam_area."""
    return torch.cat([torch.ones(batch // 2, 3, size, size), torch.zeros(batch - batch // 2, 3, size, size)])


def pixel_fraction_per_token(mask, patch):
    """(B, N) fraction of each patch's pixels that are True, by plain loops."""
    batch, _, height, width = mask.shape
    out = torch.zeros(batch, (height // patch) * (width // patch), dtype=torch.float64)
    for b in range(batch):
        for row in range(height // patch):
            for col in range(width // patch):
                block = mask[b, 0, row * patch:(row + 1) * patch, col * patch:(col + 1) * patch]
                out[b, row * (width // patch) + col] = block.sum().item() / patch ** 2
    return out


# -- defaults ---------------------------------------------------------------------------------------
def fingerprint(mixer, steps=8):
    """Kinds, partners, mask samples, lambdas and a target checksum of a seeded run, hashed."""
    images = torch.arange(8.0).view(8, 1, 1, 1).expand(8, 3, 64, 64).contiguous()
    labels = torch.arange(8)
    out = []
    for _ in range(steps):
        batch = mixer(images, labels)
        samples = [] if batch.mask is None else batch.mask[:, 0, ::16, ::16].flatten().tolist()
        bits = "".join("1" if v else "0" for v in samples)
        logits = torch.linspace(-2, 2, 80).view(8, 10)
        attn = torch.linspace(0.1, 1.0, 128).view(8, 16)
        targets = mixer.targets(batch, logits, attn if mixer.label_mode(batch.kind) != "area" else None)
        out.append((batch.kind, batch.y_b.tolist(), bits, [round(v, 6) for v in batch.lam_area.tolist()],
                    round(float(targets[:, :8].diagonal().sum()), 5)))
    return [kind for kind, *_ in out], hashlib.sha256(repr(out).encode()).hexdigest()[:16]


def test_defaults_reproduce_the_draws_recorded_before_the_ablation_options():
    """Recorded at commit cff2e73, before these options existed: the demo's published numbers rest on them."""
    mixpro = MixPro(NUM_CLASSES, mask_patch_size=32, seed=3, generator=torch.Generator().manual_seed(5))
    assert fingerprint(mixpro) == (
        ["maskmix", "cutmix", "cutmix", "maskmix", "cutmix", "cutmix", "cutmix", "maskmix"], "e7bec6122f4d29dc")
    custom = BatchMixer(NUM_CLASSES, mask_patch_size=16, maskmix_prob=0.5, cutmix_label="transmix", seed=4,
                        partner="perm", generator=torch.Generator().manual_seed(6))
    assert fingerprint(custom) == (
        ["maskmix", "maskmix", "maskmix", "maskmix", "maskmix", "maskmix", "mixup", "maskmix"], "6306242acd5d09b9")


DEFAULTS = dict(mask_strategy="random", mask_grid_offset=0, subpatch_cells=False, maskmix_shuffle="none",
                cutmix_snap=False, alpha_rule="pal", smooth_pal_targets=True)


def test_explicit_defaults_equal_a_mixer_built_without_the_new_options():
    images = torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(8)

    def run(**options):
        mixer = MixPro(NUM_CLASSES, mask_patch_size=32, seed=11, generator=torch.Generator().manual_seed(2), **options)
        out = []
        for step in range(16):
            batch = mixer(images, labels)
            draws = torch.Generator().manual_seed(step)
            logits, attn = torch.randn(8, NUM_CLASSES, generator=draws), torch.rand(8, 16, generator=draws) + 0.1
            out.append((batch.kind, batch.images, mixer.targets(batch, logits, attn)))
        return out, mixer.state_dict(), mixer.generator.get_state()

    (plain, plain_state, plain_gen), (explicit, explicit_state, explicit_gen) = run(), run(**DEFAULTS)
    assert {kind for kind, _, _ in plain} == {"maskmix", "cutmix", "mixup"}
    for (kind_a, images_a, targets_a), (kind_b, images_b, targets_b) in zip(plain, explicit):
        assert kind_a == kind_b and torch.equal(images_a, images_b) and torch.equal(targets_a, targets_b)
    assert plain_state == explicit_state and torch.equal(plain_gen, explicit_gen)


# -- Table 7: mask strategies -----------------------------------------------------------------------
def reference_blocks(rows, grid, counts, seed):
    """random_blocks by plain loops over the same random numbers: per round every row takes the first of its
    proposals that fits (inside the grid, 1..r new cells), then short rows get random free cells."""
    generator = torch.Generator().manual_seed(seed)
    height, width = grid
    chosen = [set() for _ in range(rows)]
    for _ in range(min(BLOCK_ROUNDS, height * width)):
        draws = torch.rand(rows, BLOCK_PROPOSALS, 4, generator=generator)
        aspect = torch.exp(math.log(0.3) + draws[..., 1] * (math.log(1 / 0.3) - math.log(0.3)))
        for row in range(rows):
            remaining = counts[row] - len(chosen[row])
            for k in range(BLOCK_PROPOSALS):
                area = 1.0 + draws[row, k, 0] * (remaining - 1)  # float32, as on the device
                block_h = round(float(torch.sqrt(area * aspect[row, k])))
                block_w = round(float(torch.sqrt(area / aspect[row, k])))
                if block_h >= height or block_w >= width:
                    continue
                top = int(torch.floor(draws[row, k, 2] * (height - block_h + 1)))
                left = int(torch.floor(draws[row, k, 3] * (width - block_w + 1)))
                cells = {i * width + j for i in range(top, top + block_h) for j in range(left, left + block_w)}
                new = cells - chosen[row]
                if 0 < len(new) <= remaining:
                    chosen[row] |= new
                    break
    scores = torch.rand(rows, height * width, generator=generator)
    out = torch.zeros(rows, height * width, dtype=torch.bool)
    for row in range(rows):
        free = sorted(set(range(height * width)) - chosen[row], key=lambda cell: scores[row, cell].item())
        for cell in list(chosen[row]) + free[:counts[row] - len(chosen[row])]:
            out[row, cell] = True
    return out


@pytest.mark.parametrize("grid, counts", [((4, 4), [0, 1, 5, 8, 15, 16]), ((14, 14), [0, 3, 40, 98, 150, 195]),
                                          ((7, 5), [2, 17, 34, 35, 0, 9]), ((4, 4), list(range(17)) * 3)])
def test_block_strategy_matches_the_loop_reference(grid, counts):
    blocks = random_blocks(len(counts), grid, torch.tensor(counts).view(-1, 1),
                           generator=torch.Generator().manual_seed(4))
    assert blocks.sum(1).tolist() == counts
    assert torch.equal(blocks, reference_blocks(len(counts), grid, counts, seed=4))


def test_block_masks_are_blocky():
    """At half the 14x14 grid, block masks have far more set neighbours per set cell than random ones."""
    def neighbours(cells):
        cells = cells.view(-1, 14, 14).float()
        return ((cells[:, 1:] * cells[:, :-1]).sum() + (cells[:, :, 1:] * cells[:, :, :-1]).sum()) / cells.sum()

    generator = torch.Generator().manual_seed(0)
    counts = torch.full((64, 1), 98)
    block = MaskMixGenerator(224, 16, 16, strategy="block")(64, counts=counts, generator=generator)
    random = MaskMixGenerator(224, 16, 16)(64, counts=counts, generator=generator)
    assert neighbours(block.cells) > 1.5 > neighbours(random.cells)


@pytest.mark.parametrize("strategy, cell", [("block", 16), ("block", 32), ("random", 16), ("random", 64)])
def test_strategies_label_by_the_true_pixel_fraction(strategy, cell):
    """Every token from one image, lam_area the x_a fraction of the mixed pixels, the token mask the cells."""
    mixer = BatchMixer(NUM_CLASSES, mask_patch_size=cell, maskmix_prob=1.0, mask_strategy=strategy,
                       maskmix_label="area", seed=0, generator=torch.Generator().manual_seed(1))
    images = ones_and_zeros(8, 224)
    for _ in range(3):
        batch = mixer(images, torch.arange(8))
        assert torch.equal(batch.lam_area[:4], batch.images[:4].mean(dim=(1, 2, 3)))
        assert torch.equal(batch.lam_area, batch.mask.float().mean(dim=(1, 2, 3)))
        fraction = pixel_fraction_per_token(batch.mask, 16)
        assert set(fraction.unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(batch.token_mask.double(), fraction)


def test_random_per_token_is_one_patch_cells():
    """Table 7 'random': mask_patch_size == patch_size draws floor(196 tau) tokens uniformly, one cell per token."""
    generator = MaskMixGenerator(224, 16, 16, per_sample_ratio=True)
    masks = generator(4000, generator=torch.Generator().manual_seed(0))
    assert masks.cells.shape == (4000, 14, 14)
    assert torch.equal(masks.tokens(14), masks.cells.flatten(1).float())
    assert torch.equal(masks.pixel[:, 0, ::16, ::16], masks.cells)
    # Every token is equally likely to be taken (uniform subsets), and the count is uniform on 0..195.
    per_token = masks.cells.flatten(1).float().mean(0)
    assert per_token.max() - per_token.min() < 0.08
    counts = torch.bincount(masks.cells.flatten(1).sum(1), minlength=197)
    assert counts[196] == 0
    assert scipy.stats.chisquare(counts[:196].numpy()).pvalue > 1e-3


# -- Table 8 ----------------------------------------------------------------------------------------
def test_snapped_cutmix_box_is_the_rounded_box_of_the_same_draw():
    """A: same host draws as plain CutMix, every edge rounded to the nearest multiple of 16 (halves up)."""
    images = ones_and_zeros(4, 224).flip(0).contiguous()  # x_a zeros, partner ones: image mean = 1 - lam_area
    plain = TransMix(NUM_CLASSES, seed=5, partner="flip")
    snapped = TransMix(NUM_CLASSES, seed=5, partner="flip", cutmix_snap=True)
    seen_moved = False
    for _ in range(20):
        original, batch = plain(images, torch.arange(4), kind="cutmix"), snapped(images, torch.arange(4), kind="cutmix")
        inside = (~original.mask[0, 0]).nonzero()
        if len(inside) == 0:
            continue
        edges = (inside[:, 0].min().item(), inside[:, 0].max().item() + 1,
                 inside[:, 1].min().item(), inside[:, 1].max().item() + 1)
        rounded = [int(math.floor(edge / 16 + 0.5)) * 16 for edge in edges]
        expected = torch.ones(224, 224, dtype=torch.bool)
        expected[rounded[0]:rounded[1], rounded[2]:rounded[3]] = False
        assert torch.equal(batch.mask[0, 0], expected)
        seen_moved |= rounded != list(edges)
        assert torch.allclose(batch.lam_area, expected.float().mean().expand(4), rtol=0, atol=1e-7)
        assert torch.equal(batch.images[:2].mean(dim=(1, 2, 3)), (~expected).float().mean().expand(2))
        fraction = pixel_fraction_per_token(batch.mask[:1], 16)
        assert set(fraction.unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(batch.token_mask[:1].double(), fraction)
    assert seen_moved
    assert plain.rng.getstate() == snapped.rng.getstate()


def test_offset_cells_mix_patches_and_label_by_pixel_fractions():
    """B: cell borders at 8 + 64 k px: some 16 px patches show both images; lam_area and the per-token
    fractions are counted on the pixels."""
    mixer = BatchMixer(NUM_CLASSES, mask_patch_size=64, mask_grid_offset=8, maskmix_prob=1.0, partner="flip",
                       seed=0, generator=torch.Generator().manual_seed(0))
    batch = mixer(ones_and_zeros(6, 224), torch.arange(6))
    cell_of = [0 if y < 8 else 1 + (y - 8) // 64 for y in range(224)]
    for b in range(6):
        for row in range(5):
            for col in range(5):
                rows = [y for y in range(224) if cell_of[y] == row]
                cols = [x for x in range(224) if cell_of[x] == col]
                region = batch.mask[b, 0, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
                assert region.all() or not region.any()
    assert torch.equal(batch.lam_area, batch.mask.float().mean(dim=(1, 2, 3)))
    assert torch.equal(batch.lam_area[:3], batch.images[:3].mean(dim=(1, 2, 3)))
    fraction = pixel_fraction_per_token(batch.mask, 16)
    assert torch.equal(batch.token_mask.double(), fraction)
    assert ((fraction > 0) & (fraction < 1)).any()


def test_subpatch_cells_need_their_option_and_mix_patches():
    """C: 8 px cells with 16 px patches only with subpatch_cells=True; four cells per token."""
    with pytest.raises(ValueError, match="mask_patch_size=8 must be a positive multiple of patch_size=16"):
        BatchMixer(NUM_CLASSES, mask_patch_size=8)
    with pytest.raises(ValueError, match="mask_patch_size=24 must be a divisor of patch_size=16"):
        BatchMixer(NUM_CLASSES, mask_patch_size=24, subpatch_cells=True)
    mixer = BatchMixer(NUM_CLASSES, mask_patch_size=8, subpatch_cells=True, maskmix_prob=1.0, partner="flip",
                       seed=0, generator=torch.Generator().manual_seed(0))
    batch = mixer(ones_and_zeros(4, 64), torch.arange(4))
    cells = batch.mask.view(4, 1, 8, 8, 8, 8)
    assert torch.equal(cells.amax(dim=(3, 5)), cells.amin(dim=(3, 5)))  # every 8 px cell is one image
    fraction = pixel_fraction_per_token(batch.mask, 16)
    assert torch.equal(batch.token_mask.double(), fraction)
    assert ((fraction > 0) & (fraction < 1)).any()
    assert set((fraction * 4).unique().tolist()) <= {0.0, 1.0, 2.0, 3.0, 4.0}
    assert torch.equal(batch.lam_area[:2], batch.images[:2].mean(dim=(1, 2, 3)))


# -- Table 9: shuffles ------------------------------------------------------------------------------
@pytest.mark.parametrize("shuffle", ["pasted", "canvas", "both"])
def test_shuffles_permute_tokens_within_their_image(shuffle):
    batch_size, size, patch = 6, 64, 16
    images, labels = indexed_images(batch_size, size, patch), torch.arange(batch_size)
    moved = {"pasted": 0, "canvas": 0}
    for seed in range(3):  # the shuffle draws after the mask: the first batch of both has the same mask
        reference, batch = (BatchMixer(NUM_CLASSES, mask_patch_size=16, maskmix_prob=1.0, partner="flip", seed=0,
                                       generator=torch.Generator().manual_seed(seed),
                                       maskmix_shuffle=option)(images, labels)
                            for option in ("none", shuffle))
        assert torch.equal(batch.mask, reference.mask) and torch.equal(batch.lam_area, reference.lam_area)
        assert torch.equal(batch.token_mask, reference.token_mask)
        tokens = batch.images[:, 0, ::patch, ::patch].flatten(1)
        # Every token is still a whole token (a patch of one constant value).
        assert torch.equal(batch.images, tokens.view(-1, 1, 4, 4).repeat_interleave(patch, 2)
                           .repeat_interleave(patch, 3).expand(-1, 3, -1, -1))
        for b in range(batch_size):
            for group, source_image in (("canvas", b), ("pasted", batch_size - 1 - b)):
                positions = [t for t in range(16) if batch.token_mask[b, t] == (1.0 if group == "canvas" else 0.0)]
                shown = [tokens[b, t].item() - 1000 * source_image for t in positions]
                assert sorted(shown) == positions  # each group shows its own image's tokens, each once
                if shuffle in (group, "both"):
                    moved[group] += shown != positions
                else:
                    assert shown == positions  # the other group stays in place
    for group in moved:
        assert (moved[group] > 0) == (shuffle in (group, "both"))


def test_shuffles_touch_only_maskmix_batches():
    images, labels = indexed_images(4, 64, 16), torch.arange(4)
    for kind in ("cutmix", "mixup"):
        plain, shuffled = (BatchMixer(NUM_CLASSES, maskmix_prob=0.5, mask_patch_size=16, seed=1, maskmix_shuffle=option,
                                      generator=torch.Generator().manual_seed(0))(images, labels, kind=kind)
                           for option in ("none", "both"))
        assert torch.equal(plain.images, shuffled.images)


def test_shuffles_need_tokens_of_one_image():
    with pytest.raises(ValueError, match="maskmix_shuffle='both'.*patch_size=16, got 8"):
        BatchMixer(NUM_CLASSES, maskmix_shuffle="both", mask_grid_offset=8)
    with pytest.raises(ValueError, match="maskmix_shuffle='pasted'"):
        BatchMixer(NUM_CLASSES, maskmix_shuffle="pasted", mask_patch_size=8, subpatch_cells=True)
    # An offset of whole patches keeps the tokens whole, so shuffling is allowed.
    BatchMixer(NUM_CLASSES, maskmix_shuffle="canvas", mask_grid_offset=16)


def test_shuffle_of_nothing_is_identity():
    images = torch.randn(2, 3, 32, 32)
    same = shuffle_tokens(images, torch.tensor([[1.0, 0, 0, 1], [0, 1, 1, 0]]), 16, pasted=False, canvas=False)
    assert torch.equal(same, images)


# -- Table 10: the progressive factor ---------------------------------------------------------------
def pal_mixer(**options):
    return BatchMixer(NUM_CLASSES, mask_patch_size=32, maskmix_prob=1.0, seed=0,
                      generator=torch.Generator().manual_seed(0), **options)


def hand_lambda(batch, attn, alpha):
    """PAL's lambda in float64 (paper Eq. 5 and 9)."""
    attn = attn.double()
    lam_attn = (attn * batch.token_mask.double()).sum(1) / attn.sum(1)
    return alpha * lam_attn + (1 - alpha) * batch.lam_area.double()


@pytest.mark.parametrize("rule, formula", [("linear", lambda p: p), ("parabolic", lambda p: p * p)])
def test_progress_rules_follow_their_formula(rule, formula):
    mixer = pal_mixer(alpha_rule=rule)
    images, labels = torch.randn(8, 3, 64, 64), torch.arange(8)
    attn = torch.rand(8, 16) + 0.05
    batch = mixer(images, labels)
    with pytest.raises(RuntimeError, match="set_progress"):
        mixer.targets(batch, torch.randn(8, NUM_CLASSES), attn)
    for epoch, total in [(0, 300), (1, 300), (150, 300), (299, 300), (7.5, 10)]:
        mixer.set_progress(epoch, total)
        batch = mixer(images, labels)
        targets = mixer.targets(batch, torch.randn(8, NUM_CLASSES), attn)
        expected_alpha = formula(epoch / total)
        assert torch.allclose(batch.alpha, torch.full((8,), expected_alpha), rtol=0, atol=1e-7)
        lam = hand_lambda(batch, attn, expected_alpha)
        assert torch.allclose(targets, mix_targets(labels, batch.y_b, lam, NUM_CLASSES, 0.1), atol=1e-6)
    for epoch, total in [(-1, 10), (11, 10), (0, 0)]:
        with pytest.raises(ValueError, match=f"epoch={epoch}, total_epochs={total}"):
            mixer.set_progress(epoch, total)


def test_constant_rule_is_the_equal_weight():
    mixer = pal_mixer(alpha_rule="constant")
    batch = mixer(torch.randn(8, 3, 64, 64), torch.arange(8))
    attn = torch.rand(8, 16) + 0.05
    mixer.targets(batch, torch.randn(8, NUM_CLASSES), attn)
    assert torch.equal(batch.alpha, torch.full((8,), 0.5))
    assert torch.allclose(batch.lam, hand_lambda(batch, attn, 0.5).float(), atol=1e-6)


def test_learnable_alpha_gets_the_gradient_of_the_loss():
    """d loss / d logit against a central finite difference of the loss written out in float64."""
    mixer = pal_mixer(alpha_rule="learnable")
    assert mixer.learnable_parameters() == [mixer.alpha_logit] and pal_mixer().learnable_parameters() == []
    images, labels = torch.randn(8, 3, 64, 64), torch.arange(8)
    batch = mixer(images, labels)
    logits, attn = torch.randn(8, NUM_CLASSES), torch.rand(8, 16) + 0.05
    with torch.no_grad():
        mixer.alpha_logit.fill_(0.3)
    loss = soft_target_cross_entropy(logits, mixer.targets(batch, logits, attn))
    loss.backward()
    assert torch.allclose(batch.alpha, torch.sigmoid(torch.tensor(0.3)).expand(8))

    def loss_at(logit):  # float64 throughout, smoothing 0.1 written out
        alpha = 1 / (1 + math.exp(-logit))
        lam = hand_lambda(batch, attn, alpha)
        targets = torch.full((8, NUM_CLASSES), 0.1 / NUM_CLASSES, dtype=torch.float64)
        for i in range(8):
            targets[i, labels[i]] += 0.9 * lam[i]
            targets[i, batch.y_b[i]] += 0.9 * (1 - lam[i])
        return -(targets * logits.double().log_softmax(1)).sum(1).mean().item()

    step = 1e-4
    numeric = (loss_at(0.3 + step) - loss_at(0.3 - step)) / (2 * step)
    assert mixer.alpha_logit.grad.item() == pytest.approx(numeric, rel=1e-4)
    assert mixer.alpha_logit.grad.item() != 0


def test_learnable_alpha_trains_round_trips_and_moves_in_place():
    mixer = pal_mixer(alpha_rule="learnable")
    optimizer = torch.optim.SGD(mixer.learnable_parameters(), lr=10.0)
    images, labels = torch.randn(8, 3, 64, 64), torch.arange(8)
    for _ in range(3):
        batch = mixer(images, labels)
        logits = torch.randn(8, NUM_CLASSES)
        optimizer.zero_grad()
        soft_target_cross_entropy(logits, mixer.targets(batch, logits, torch.rand(8, 16) + 0.05)).backward()
        optimizer.step()
    value = mixer.alpha_logit.detach().clone()
    assert value != 0
    buffer = io.BytesIO()
    torch.save(mixer.state_dict(), buffer)
    buffer.seek(0)
    restored = pal_mixer(alpha_rule="learnable")
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(restored.alpha_logit.detach(), value)
    assert restored.rng.getstate() == mixer.rng.getstate()
    with pytest.raises(ValueError, match="no learnable alpha"):
        restored.load_state_dict(pal_mixer().state_dict())
    with pytest.raises(ValueError, match="learnable.*detach_alpha"):
        pal_mixer(alpha_rule="learnable", detach_alpha=True)


# -- Fig. 5: cell scales and beta --------------------------------------------------------------------
@pytest.mark.parametrize("scale, grid", [(1, 14), (2, 7), (4, 4), (7, 2)])
def test_cell_scales_of_fig_5(scale, grid):
    mixer = BatchMixer(NUM_CLASSES, mask_patch_size=16 * scale, maskmix_prob=1.0, partner="flip", seed=0,
                       generator=torch.Generator().manual_seed(scale))
    mixer.check_image_size((224, 224))
    assert mixer._maskmix_generator((224, 224)).grid == (grid, grid)
    batch = mixer(ones_and_zeros(4, 224), torch.arange(4))
    assert torch.equal(batch.lam_area[:2], batch.images[:2].mean(dim=(1, 2, 3)))
    fraction = pixel_fraction_per_token(batch.mask, 16)
    assert torch.equal(batch.token_mask.double(), fraction) and set(fraction.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("beta", [0.5, 0.8, 1.0, 2.0])
def test_maskmix_beta_of_fig_5(beta):
    mixer = BatchMixer(NUM_CLASSES, maskmix_beta=beta, per_sample_ratio=True, maskmix_prob=1.0, seed=0,
                       generator=torch.Generator().manual_seed(0))
    batch = mixer(ones_and_zeros(4, 224), torch.arange(4))
    assert torch.equal(batch.lam_area, batch.mask.float().mean(dim=(1, 2, 3)))
    draws = 16000  # the masked-cell counts are where beta enters: floor(16 tau), tau ~ Beta(beta, beta)
    counts = mixer._maskmix_generator((224, 224)).sample_counts(draws, torch.device("cpu"), mixer.generator)
    observed = torch.bincount(counts.flatten(), minlength=17).numpy()
    edges = scipy.stats.beta.cdf([k / 16 for k in range(17)], beta, beta)
    assert observed[16] == 0
    assert scipy.stats.chisquare(observed[:16], (edges[1:] - edges[:-1]) * draws).pvalue > 1e-3


# -- the official code's protocol ------------------------------------------------------------------
def test_unsmoothed_pal_targets():
    """PAL batches: one-hot mixtures, alpha from the unsmoothed area target; other batches still smoothed."""
    mixer = MixPro(NUM_CLASSES, mask_patch_size=32, smooth_pal_targets=False, seed=0,
                   generator=torch.Generator().manual_seed(0))
    images, labels = torch.randn(8, 3, 64, 64), torch.arange(8)
    attn, logits = torch.rand(8, 16) + 0.05, torch.randn(8, NUM_CLASSES) * 2
    batch = mixer(images, labels, kind="maskmix")
    targets = mixer.targets(batch, logits, attn)
    area = torch.zeros(8, NUM_CLASSES)
    for i in range(8):
        area[i, batch.y_a[i]] += batch.lam_area[i]
        area[i, batch.y_b[i]] += 1 - batch.lam_area[i]
    probs = logits.softmax(1)
    alpha = (probs * area).sum(1) / (probs.norm(dim=1) * area.norm(dim=1))
    lam = hand_lambda(batch, attn, alpha.double())
    expected = torch.zeros(8, NUM_CLASSES)
    for i in range(8):
        expected[i, batch.y_a[i]] += lam[i]
        expected[i, batch.y_b[i]] += 1 - lam[i]
    assert torch.allclose(batch.alpha, alpha, atol=1e-6) and torch.allclose(targets, expected, atol=1e-6)
    assert targets.min() == 0  # no smoothing mass anywhere
    mixup = mixer(images, labels, kind="mixup")
    assert torch.allclose(mixer.targets(mixup, logits),
                          mix_targets(labels, mixup.y_b, mixup.lam_area, NUM_CLASSES, 0.1))


def test_partner_permutes_on_maskmix_and_flips_otherwise():
    generator = torch.Generator().manual_seed(0)
    mixer = MixPro(NUM_CLASSES, mask_patch_size=32, partner="perm_maskmix", seed=0, generator=generator)
    images, labels = torch.randn(16, 3, 64, 64), torch.arange(16)
    for kind in ("cutmix", "mixup"):
        before = generator.get_state()
        assert torch.equal(mixer(images, labels, kind=kind).y_b, labels.flip(0))
        assert torch.equal(generator.get_state(), before)  # no permutation drawn
    permuted = [mixer(images, labels, kind="maskmix").y_b for _ in range(3)]
    for y_b in permuted:
        assert sorted(y_b.tolist()) == list(range(16))
    assert any(not torch.equal(y_b, labels.flip(0)) for y_b in permuted)


def test_bad_ablation_options_name_themselves():
    cases = {
        "mask_strategy": dict(mask_strategy="grid"),
        "mask_grid_offset=64": dict(mask_grid_offset=64),
        "mask_grid_offset=-8": dict(mask_grid_offset=-8),
        "maskmix_shuffle": dict(maskmix_shuffle="all"),
        "alpha_rule": dict(alpha_rule="cosine"),
        "partner": dict(partner="official"),
    }
    for name, options in cases.items():
        with pytest.raises(ValueError, match=name):
            BatchMixer(NUM_CLASSES, **options)
    with pytest.raises(ValueError, match="strategy"):
        MaskMixGenerator(224, 64, 16, strategy="grid")
    with pytest.raises(ValueError, match="grid_offset=70"):
        MaskMixGenerator(224, 64, 16, grid_offset=70)


# -- the device rule ---------------------------------------------------------------------------------
ABLATIONS = [dict(mask_strategy="block"), dict(mask_grid_offset=8), dict(mask_patch_size=8, subpatch_cells=True),
             dict(maskmix_shuffle="both"), dict(cutmix_snap=True, transmix_on_cutmix=True),
             dict(alpha_rule="constant"), dict(alpha_rule="linear"), dict(alpha_rule="learnable"),
             dict(partner="perm_maskmix"), dict(smooth_pal_targets=False)]


@pytest.mark.parametrize("options", ABLATIONS, ids=lambda options: "-".join(f"{k}={v}" for k, v in options.items()))
def test_ablations_read_nothing_back_to_the_host(options):
    """No tensor read on the host (item, bool, ...) and no torch op that reads one internally."""
    from torch.profiler import ProfilerActivity, profile

    mixer = MixPro(NUM_CLASSES, seed=0, **options)
    mixer.set_progress(3, 10)
    images, labels = torch.randn(4, 3, 224, 224), torch.arange(4)
    attn = torch.rand(4, 196) + 0.05
    for kind in ("maskmix", "cutmix", "mixup"):
        with forbid_host_reads(), profile(activities=[ProfilerActivity.CPU]) as prof:
            batch = mixer(images, labels, kind=kind)
            mixer.targets(batch, torch.randn(4, NUM_CLASSES), attn)
        names = {event.key for event in prof.key_averages()}
        assert not names & {"aten::_local_scalar_dense", "aten::item"}, kind


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("options", ABLATIONS, ids=lambda options: "-".join(f"{k}={v}" for k, v in options.items()))
def test_ablations_on_the_gpu_never_synchronise(options):
    """CUDA's sync debug mode raises on any synchronising call once the tables are on the device; the
    learnable alpha moves there in place and receives its gradient there."""
    device = torch.device("cuda")
    mixer = MixPro(NUM_CLASSES, seed=0, generator=torch.Generator(device).manual_seed(0), **options)
    parameters = mixer.learnable_parameters()
    mixer.set_progress(3, 10)
    images, labels = torch.randn(8, 3, 224, 224, device=device), torch.arange(8, device=device)
    attn = torch.rand(8, 196, device=device) + 0.05
    logits = torch.randn(8, NUM_CLASSES, device=device, requires_grad=True)
    if parameters:
        with pytest.raises(ValueError, match=r"mixer.to\(device\)"):
            mixer.targets(mixer(images, labels, kind="maskmix"), logits, attn)
        assert mixer.to(device).learnable_parameters()[0] is parameters[0] and parameters[0].is_cuda
    for kind in ("maskmix", "cutmix", "mixup"):
        mixer(images, labels, kind=kind)  # first use copies the generator's tables to the device
        torch.cuda.set_sync_debug_mode("error")
        try:
            batch = mixer(images, labels, kind=kind)
            soft_target_cross_entropy(logits, mixer.targets(batch, logits, attn)).backward()
        finally:
            torch.cuda.set_sync_debug_mode("default")
        assert batch.images.is_cuda and batch.lam_area.is_cuda
    assert all(parameter.grad is not None and parameter.grad.is_cuda for parameter in parameters)
