"""Robustness metrics, following the protocols of the ImageNet-A / -O reference code.

- ``top1``: accuracy in %.
- ``calibration_error``: RMS calibration error with adaptive bins of ``bin_size`` consecutive samples
  sorted by confidence, the last bin taking the remainder. All bins count, the last one included
  (the reference code's master branch skips its last bin; an unmerged fix includes it).
- ``aurra``: area under the response-rate accuracy curve: the accuracy of the k most confident
  predictions, averaged over k = 1..N. Tied confidences get the expected value over their orderings
  (every position in a tie group counts the group's mean correctness), so the result does not
  depend on how a sort breaks ties.
- ``ood_scores``: OOD detection with OOD as the positive class: AUPR (scikit-learn's
  average_precision_score), AUROC and the FPR at 95 % TPR.

Inputs are 1-D arrays or tensors; they are validated (length, emptiness, NaN, value range).
"""
from __future__ import annotations

from typing import Dict

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

__all__ = ["top1", "calibration_error", "aurra", "ood_scores"]


def _vector(name: str, values, length: int = None) -> np.ndarray:
    array = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    if np.isnan(array).any():
        raise ValueError(f"{name} contains NaN at positions {np.flatnonzero(np.isnan(array))[:10].tolist()}")
    if length is not None and array.size != length:
        raise ValueError(f"{name} has {array.size} values but {length} were expected")
    return array


def _binary(name: str, values, length: int = None) -> np.ndarray:
    array = _vector(name, values, length)
    if not np.isin(array, (0.0, 1.0)).all():
        raise ValueError(f"{name} must hold only 0/1 (or booleans)")
    return array


def _confidence(values, length: int = None) -> np.ndarray:
    array = _vector("confidence", values, length)
    if (array < 0).any() or (array > 1).any():
        raise ValueError("confidence must lie in [0, 1] (max softmax probability)")
    return array


def top1(predictions, labels) -> float:
    """Accuracy in % of predicted class indices against labels."""
    predictions = _vector("predictions", predictions)
    labels = _vector("labels", labels, predictions.size)
    return 100.0 * float(np.mean(predictions == labels))


def calibration_error(confidence, correct, bin_size: int = 100) -> float:
    """RMS calibration error in %: sqrt(sum_b n_b / N * (mean conf_b - mean correct_b)^2) over
    adaptive bins of ``bin_size`` samples sorted by confidence (last bin: the remainder too)."""
    if bin_size < 1:
        raise ValueError(f"bin_size must be >= 1, got {bin_size}")
    confidence = _confidence(confidence)
    correct = _binary("correct", correct, confidence.size)
    order = np.argsort(confidence, kind="stable")
    confidence, correct = confidence[order], correct[order]
    count = confidence.size
    edges = list(range(0, count, bin_size))
    if len(edges) > 1 and count - edges[-1] < bin_size:
        edges.pop()  # the remainder joins the last full bin
    edges.append(count)
    total = 0.0
    for start, end in zip(edges[:-1], edges[1:]):
        gap = confidence[start:end].mean() - correct[start:end].mean()
        total += (end - start) / count * gap ** 2
    return 100.0 * float(np.sqrt(total))


def aurra(confidence, correct) -> float:
    """Area under the response-rate accuracy curve in % (higher is better)."""
    confidence = _confidence(confidence)
    correct = _binary("correct", correct, confidence.size)
    order = np.argsort(-confidence, kind="stable")
    confidence, correct = confidence[order], correct[order]
    # Replace each tie group's correctness by its mean: the expectation over tie orderings.
    _, group, sizes = np.unique(-confidence, return_inverse=True, return_counts=True)
    expected = (np.bincount(group, weights=correct) / sizes)[group]
    accuracy_at_k = np.cumsum(expected) / np.arange(1, confidence.size + 1)
    return 100.0 * float(accuracy_at_k.mean())


def ood_scores(score, is_ood) -> Dict[str, float]:
    """OOD detection measures in %, OOD the positive class; a higher ``score`` means "more OOD"
    (e.g. the negative max softmax probability)."""
    score = _vector("score", score)
    is_ood = _binary("is_ood", is_ood, score.size)
    if is_ood.min() == is_ood.max():
        raise ValueError("is_ood needs both in-distribution (0) and OOD (1) samples")
    fpr, tpr, _ = roc_curve(is_ood, score)
    return {
        "aupr": 100.0 * float(average_precision_score(is_ood, score)),
        "auroc": 100.0 * float(roc_auc_score(is_ood, score)),
        "fpr_at_95_tpr": 100.0 * float(fpr[np.searchsorted(tpr, 0.95, side="left")]),
    }
