"""Robustness metrics, following the protocols of the ImageNet-A / -O reference code.

- ``top1``: accuracy in %.
- ``calibration_error``: RMS calibration error with adaptive bins of ``bin_size`` consecutive samples
  sorted by confidence, the last bin taking the remainder. Protocol ``all-bins`` (the default) counts
  every bin, the last one included (an unmerged fix of the reference code); ``reference`` is the
  reference code's master (hendrycks/natural-adv-examples ``calib_err``), which leaves the last bin out
  of the sum while its samples still count in N.
- ``aurra``: area under the response-rate accuracy curve: the accuracy of the k most confident
  predictions, averaged over k = 1..N. Tied confidences get the expected value over their orderings
  (every position in a tie group counts the group's mean correctness), so the result does not
  depend on how a sort breaks ties.
- ``ood_scores``: OOD detection with OOD as the positive class: AUPR (scikit-learn's
  average_precision_score), AUPR-In (the same with in-distribution as the positive class and the
  negated score), AUROC and the FPR at 95 % TPR, by one of two definitions (``FPR_DEFINITIONS``):
  ``first-reaching``, the FPR at the first threshold (scores descending) whose TPR reaches 95 %, or
  ``nearest-recall``, the reference code's (``fpr_and_fdr_at_recall``): the FPR at the threshold whose
  TPR is nearest to 95 %, which may lie below 95 %.

Inputs are 1-D arrays or tensors; they are validated (length, emptiness, NaN, value range).
"""
from __future__ import annotations

from typing import Dict

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

__all__ = ["top1", "calibration_error", "aurra", "ood_scores", "CALIBRATION_PROTOCOLS", "FPR_DEFINITIONS"]

CALIBRATION_PROTOCOLS = ("all-bins", "reference")
FPR_DEFINITIONS = ("first-reaching", "nearest-recall")
RECALL_LEVEL = 0.95


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


def calibration_error(confidence, correct, bin_size: int = 100, protocol: str = "all-bins") -> float:
    """RMS calibration error in %: sqrt(sum_b n_b / N * (mean conf_b - mean correct_b)^2) over
    adaptive bins of ``bin_size`` samples sorted by confidence (last bin: the remainder too). The
    ``reference`` protocol leaves the last bin out of the sum and needs one full bin at least (the
    reference code fails on fewer samples)."""
    if bin_size < 1:
        raise ValueError(f"bin_size must be >= 1, got {bin_size}")
    if protocol not in CALIBRATION_PROTOCOLS:
        raise ValueError(f"calibration protocol must be one of {CALIBRATION_PROTOCOLS}, got {protocol!r}")
    confidence = _confidence(confidence)
    correct = _binary("correct", correct, confidence.size)
    count = confidence.size
    if protocol == "reference" and count < bin_size:
        raise ValueError(f"the reference calibration protocol needs at least {bin_size} samples (one full bin), "
                         f"got {count}")
    order = np.argsort(confidence, kind="stable")
    confidence, correct = confidence[order], correct[order]
    edges = list(range(0, count, bin_size))
    if len(edges) > 1 and count - edges[-1] < bin_size:
        edges.pop()  # the remainder joins the last full bin
    edges.append(count)
    bins = list(zip(edges[:-1], edges[1:]))
    if protocol == "reference":
        bins = bins[:-1]
    total = 0.0
    for start, end in bins:
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


def ood_scores(score, is_ood, fpr_definition: str = "first-reaching") -> Dict[str, float]:
    """OOD detection measures in %, OOD the positive class; a higher ``score`` means "more OOD"
    (e.g. the negative max softmax probability). ``aupr_in`` takes in-distribution as the positive
    class, ranked by the negated score."""
    if fpr_definition not in FPR_DEFINITIONS:
        raise ValueError(f"FPR definition must be one of {FPR_DEFINITIONS}, got {fpr_definition!r}")
    score = _vector("score", score)
    is_ood = _binary("is_ood", is_ood, score.size)
    if is_ood.min() == is_ood.max():
        raise ValueError("is_ood needs both in-distribution (0) and OOD (1) samples")
    # Every distinct threshold: the dropped "intermediate" points could hold the one sought.
    fpr, tpr, _ = roc_curve(is_ood, score, drop_intermediate=False)
    if fpr_definition == "first-reaching":
        point = int(np.searchsorted(tpr, RECALL_LEVEL, side="left"))
    else:
        # The reference walks from full recall down and keeps the first nearest point: among equally
        # near points the higher TPR, then the lower threshold (the larger FPR).
        reached = int(np.searchsorted(tpr, 1.0, side="left")) + 1  # thresholds up to the first full recall
        distance = np.abs(tpr[1:reached] - RECALL_LEVEL)  # [0] is roc_curve's (0, 0) start, no threshold
        point = 1 + int(np.lexsort((-fpr[1:reached], -tpr[1:reached], distance))[0])
    return {
        "aupr": 100.0 * float(average_precision_score(is_ood, score)),
        "aupr_in": 100.0 * float(average_precision_score(1 - is_ood, -score)),
        "auroc": 100.0 * float(roc_auc_score(is_ood, score)),
        "fpr_at_95_tpr": 100.0 * float(fpr[point]),
    }
