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
    assert perfect == {"aupr": pytest.approx(100.0), "aupr_in": pytest.approx(100.0), "auroc": pytest.approx(100.0),
                       "fpr_at_95_tpr": 0.0}
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


def test_calibration_protocols_on_fixed_numbers():
    # 250 samples = bins of 100 and 150 (the remainder joins the last full bin).
    confidence = np.concatenate([np.full(100, 0.8), np.full(150, 0.95)])
    correct = np.concatenate([np.arange(100) < 50, np.zeros(150)]).astype(float)
    first, last = 100 / 250 * (0.8 - 0.5) ** 2, 150 / 250 * 0.95 ** 2
    assert calibration_error(confidence, correct) == pytest.approx(100 * np.sqrt(first + last))
    # The reference master leaves the last bin out of the sum; its samples still count in N = 250.
    assert calibration_error(confidence, correct, protocol="reference") == pytest.approx(100 * np.sqrt(first))
    # Three bins (300 samples): the reference keeps the first two.
    confidence = np.repeat([0.2, 0.6, 0.9], 100)
    correct = np.concatenate([np.arange(100) < 40, np.arange(100) < 60, np.arange(100) < 30]).astype(float)
    gaps = [0.2 - 0.4, 0.6 - 0.6, 0.9 - 0.3]
    assert calibration_error(confidence, correct) == pytest.approx(100 * np.sqrt(sum(g * g for g in gaps) / 3))
    assert calibration_error(confidence, correct, protocol="reference") == pytest.approx(
        100 * np.sqrt(sum(g * g for g in gaps[:2]) / 3))
    with pytest.raises(ValueError, match="at least 100 samples"):
        calibration_error(np.full(99, 0.5), np.ones(99), protocol="reference")
    with pytest.raises(ValueError, match="protocol"):
        calibration_error([0.5], [1], protocol="last-bin")


def test_aupr_in_takes_in_distribution_as_positive():
    rng = np.random.default_rng(3)
    is_ood = np.concatenate([np.zeros(300), np.ones(60)])
    score = rng.normal(0, 1, 360) + 0.8 * is_ood  # higher = more OOD
    result = ood_scores(score, is_ood)
    assert result["aupr_in"] == pytest.approx(100 * average_precision_score(is_ood == 0, -score))
    assert result["aupr_in"] != pytest.approx(result["aupr"])
    assert ood_scores([0.1, 0.2, 0.9], [0, 0, 1])["aupr_in"] == pytest.approx(100.0)


def test_fpr_at_95_tpr_both_definitions_by_hand():
    # 20 OOD (positive) and 10 in-distribution samples, scores descending: 18 OOD, 1 in, 1 OOD (TPR 95 %),
    # 3 in, the last OOD, 6 in.
    order = [1] * 18 + [0] + [1] + [0] * 3 + [1] + [0] * 6
    score = np.arange(len(order), 0, -1, dtype=float)
    # First threshold reaching 95 %: the 19th OOD sample's, with 1 in-distribution sample above it.
    assert ood_scores(score, order)["fpr_at_95_tpr"] == pytest.approx(10.0)
    # Nearest recall: TPR stays exactly 95 % down to the third of the next 3 in-distribution samples;
    # the reference takes the lowest of those thresholds: 4 of 10.
    assert ood_scores(score, order, "nearest-recall")["fpr_at_95_tpr"] == pytest.approx(40.0)
    # 12 OOD: TPR goes 11/12 -> 12/12. The 12th OOD sample ties with an in-distribution one. First reaching:
    # TPR 100 % at that tied score, 2 in-distribution at or above it (2 of 5); nearest: 11/12 is nearer to
    # 95 % than 12/12, and at most 1 in-distribution sample lies above the tie (1 of 5), below 95 % TPR.
    score = np.array([20.0 - i for i in range(11)] + [8.5, 5.0, 5.0, 1.0, 0.5, 0.2])
    is_ood = np.array([1] * 11 + [0, 1, 0, 0, 0, 0])
    assert ood_scores(score, is_ood)["fpr_at_95_tpr"] == pytest.approx(40.0)
    assert ood_scores(score, is_ood, "nearest-recall")["fpr_at_95_tpr"] == pytest.approx(20.0)
    with pytest.raises(ValueError, match="FPR definition"):
        ood_scores(score, is_ood, "interpolated")
