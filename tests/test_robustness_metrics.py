"""Robustness metrics against independent, obviously-correct computations and hand-made cases."""
import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from robustness.metrics import aurra, calibration_error, ood_scores, top1


def brute_calibration(confidence, correct, bin_size):
    """Bins as the reference describes them: floor(N / size) bins, the last one extended to N."""
    order = sorted(range(len(confidence)), key=lambda i: confidence[i])
    conf = [confidence[i] for i in order]
    corr = [correct[i] for i in order]
    n_bins = max(len(conf) // bin_size, 1)
    bins = [[b * bin_size, (b + 1) * bin_size] for b in range(n_bins)]
    bins[-1][1] = len(conf)
    total = 0.0
    for start, end in bins:
        gap = sum(conf[start:end]) / (end - start) - sum(corr[start:end]) / (end - start)
        total += (end - start) / len(conf) * gap * gap
    return 100 * total ** 0.5


def test_calibration_random_against_brute_force():
    rng = np.random.default_rng(0)
    for n in (37, 100, 250, 1000, 1234):
        confidence = rng.uniform(0, 1, n)
        correct = (rng.uniform(0, 1, n) < confidence ** 2).astype(float)
        assert calibration_error(confidence, correct) == pytest.approx(brute_calibration(confidence, correct, 100))


def test_calibration_hand_made():
    # Perfectly calibrated: each bin of 100 has mean confidence equal to its accuracy.
    confidence = np.repeat([0.3, 0.7], 100)
    correct = np.concatenate([np.arange(100) < 30, np.arange(100) < 70]).astype(float)
    assert calibration_error(confidence, correct) == pytest.approx(0.0, abs=1e-9)
    # Always wrong at confidence 0.9: the error is the confidence.
    assert calibration_error(np.full(300, 0.9), np.zeros(300)) == pytest.approx(90.0)
    # The last bin counts: 250 samples = bins of 100 and 150; only the last 150 are miscalibrated.
    confidence = np.concatenate([np.full(100, 0.5), np.full(150, 0.95)])
    correct = np.concatenate([np.arange(100) < 50, np.zeros(150)]).astype(float)
    assert calibration_error(confidence, correct) == pytest.approx(100 * np.sqrt(150 / 250 * 0.95 ** 2))


def test_aurra_hand_made():
    assert aurra([0.9, 0.8, 0.7], [1, 1, 1]) == pytest.approx(100.0)
    assert aurra([0.9, 0.8, 0.7], [0, 0, 0]) == pytest.approx(0.0)
    assert aurra([0.9, 0.8, 0.7], [1, 0, 1]) == pytest.approx(100 * (1 + 1 / 2 + 2 / 3) / 3)
    # Confident mistakes cost more than unconfident ones.
    assert aurra([0.9, 0.1], [0, 1]) < aurra([0.9, 0.1], [1, 0])


def test_aurra_ties_are_order_independent():
    confidence = [0.5, 0.5, 0.9, 0.5]
    correct = [1, 0, 1, 0]
    expected = 100 * (1 + (1 + 1 / 3) / 2 + (1 + 2 / 3) / 3 + 2 / 4) / 4  # tie group mean 1/3 per position
    for permutation in ([0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]):
        assert aurra([confidence[i] for i in permutation], [correct[i] for i in permutation]) == pytest.approx(expected)


def test_aurra_random_against_brute_force():
    rng = np.random.default_rng(1)
    confidence = rng.uniform(0, 1, 500)
    correct = (rng.uniform(0, 1, 500) < confidence).astype(float)
    order = sorted(range(500), key=lambda i: -confidence[i])
    curve = [sum(correct[i] for i in order[:k]) / k for k in range(1, 501)]
    assert aurra(torch.tensor(confidence), torch.tensor(correct)) == pytest.approx(100 * sum(curve) / 500)


def test_ood_scores_use_ood_as_positive():
    rng = np.random.default_rng(2)
    is_ood = np.concatenate([np.zeros(400), np.ones(100)])
    score = rng.normal(0, 1, 500) + is_ood
    result = ood_scores(score, is_ood)
    assert result["aupr"] == pytest.approx(100 * average_precision_score(is_ood, score))
    assert result["aupr"] != pytest.approx(100 * average_precision_score(1 - is_ood, -score))
    # AUROC = P(score of an OOD sample > score of an in-distribution one), pair by pair.
    pairs = (score[is_ood == 1][:, None] > score[is_ood == 0][None, :]).mean()
    assert result["auroc"] == pytest.approx(100 * pairs)
    # FPR at 95% TPR: the lowest threshold keeping 95 % of OOD samples above it.
    threshold = np.sort(score[is_ood == 1])[::-1][int(np.ceil(0.95 * 100)) - 1]
    assert result["fpr_at_95_tpr"] == pytest.approx(100 * (score[is_ood == 0] >= threshold).mean())


def test_ood_perfect_and_chance():
    is_ood = np.array([0, 0, 0, 1, 1])
    perfect = ood_scores([0.1, 0.2, 0.3, 0.8, 0.9], is_ood)
    assert perfect == {"aupr": pytest.approx(100.0), "auroc": pytest.approx(100.0), "fpr_at_95_tpr": 0.0}
    constant = ood_scores(np.zeros(5), is_ood)
    assert constant["aupr"] == pytest.approx(40.0) and constant["auroc"] == pytest.approx(50.0)


def test_top1():
    assert top1([1, 2, 3, 4], [1, 2, 0, 0]) == pytest.approx(50.0)


def test_inputs_are_validated():
    with pytest.raises(ValueError, match="empty"):
        aurra([], [])
    with pytest.raises(ValueError, match="3 values but 2"):
        calibration_error([0.1, 0.2], [1, 0, 1])
    with pytest.raises(ValueError, match="NaN at positions \\[1\\]"):
        calibration_error([0.1, float("nan")], [1, 0])
    with pytest.raises(ValueError, match="0/1"):
        aurra([0.1, 0.2], [1, 2])
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        aurra([1.5, 0.2], [1, 0])
    with pytest.raises(ValueError, match="both"):
        ood_scores([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="bin_size"):
        calibration_error([0.1], [1], bin_size=0)
