"""ImageNet-C (Hendrycks & Dietterich, "Benchmarking neural network robustness to common corruptions and
perturbations", ICLR 2019): the corruptions, AlexNet's published errors and the CE / mCE arithmetic.

- Corruption error of a model on corruption c: CE_c = sum_s E_{s,c} / sum_s E^AlexNet_{s,c} over the
  severities s; mCE = the mean of CE_c over the 15 standard corruptions.
- Relative CE_c = sum_s (E_{s,c} - E_clean) / sum_s (E^AlexNet_{s,c} - E^AlexNet_clean); relative mCE =
  their mean over the 15. E_clean is the model's top-1 error on clean ImageNet val.
- The 4 extra corruptions (the paper's validation corruptions) have CEs of their own, outside mCE.

With only some severities of a corruption on disk, its CE sums over those severities on both sides
(AlexNet's errors are published per severity); mCE and relative mCE need all 15 corruptions at all 5
severities. Errors are top-1 errors in %; CEs are in % (AlexNet = 100).
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional

CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
               "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
               "jpeg_compression")
EXTRA_CORRUPTIONS = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
SEVERITIES = (1, 2, 3, 4, 5)

# AlexNet's top-1 error per severity 1-5, and its published average, from the table "AlexNet ImageNet-C
# Error" of the reference code's README (github.com/hendrycks/robustness); the averages are the
# numbers every mCE is normalised by (the same 15 in e.g. AugMix's imagenet.py).
ALEXNET_ERRORS = {
    "gaussian_noise": (0.69528, 0.82542, 0.93554, 0.98138, 0.99452),
    "shot_noise": (0.71224, 0.85108, 0.93574, 0.98182, 0.99146),
    "impulse_noise": (0.78374, 0.89808, 0.94870, 0.98720, 0.99548),
    "defocus_blur": (0.65624, 0.73202, 0.85036, 0.91364, 0.94714),
    "glass_blur": (0.64308, 0.75054, 0.88806, 0.91622, 0.93344),
    "motion_blur": (0.58430, 0.70048, 0.82108, 0.89750, 0.92638),
    "zoom_blur": (0.70008, 0.76992, 0.80784, 0.84198, 0.87198),
    "snow": (0.71726, 0.88392, 0.86468, 0.91870, 0.94952),
    "frost": (0.61390, 0.79734, 0.88790, 0.89942, 0.93430),
    "fog": (0.67474, 0.76050, 0.84378, 0.87260, 0.94500),
    "brightness": (0.45140, 0.48502, 0.54048, 0.62166, 0.72440),
    "contrast": (0.64548, 0.76150, 0.88874, 0.97760, 0.99270),
    "elastic_transform": (0.52596, 0.70116, 0.55686, 0.64076, 0.80554),
    "pixelate": (0.52218, 0.54620, 0.73728, 0.87092, 0.91262),
    "jpeg_compression": (0.51002, 0.54718, 0.57294, 0.65458, 0.74778),
    "speckle_noise": (0.66192, 0.74440, 0.90246, 0.94548, 0.97268),
    "gaussian_blur": (0.54732, 0.70444, 0.82574, 0.89864, 0.95940),
    "spatter": (0.47196, 0.62194, 0.75052, 0.84132, 0.90182),
    "saturate": (0.59342, 0.65514, 0.51174, 0.70834, 0.82260),
}
ALEXNET_MEAN_ERRORS = {
    "gaussian_noise": 0.886428, "shot_noise": 0.894468, "impulse_noise": 0.922640, "defocus_blur": 0.819880,
    "glass_blur": 0.826268, "motion_blur": 0.785948, "zoom_blur": 0.798360, "snow": 0.866816, "frost": 0.826572,
    "fog": 0.819324, "brightness": 0.564592, "contrast": 0.853204, "elastic_transform": 0.646056,
    "pixelate": 0.717840, "jpeg_compression": 0.606500, "speckle_noise": 0.845388, "gaussian_blur": 0.787108,
    "spatter": 0.717512, "saturate": 0.658248,
}
# AlexNet's clean ImageNet val top-1 error (torchvision's weights, as the reference code evaluates:
# 56.52 % top-1), the relative mCE's E^AlexNet_clean: "43.5" in the paper's tables, 0.4348 in
# google-research/robustness_metrics (reports/imagenet.py).
ALEXNET_CLEAN_ERROR = 0.4348
ALEXNET_SOURCE = ("AlexNet errors: Hendrycks & Dietterich (ICLR 2019), the table of github.com/hendrycks/robustness; "
                  f"clean error {100 * ALEXNET_CLEAN_ERROR:.2f} %")


def corruption_summary(errors: Mapping[str, Mapping[int, float]], clean_error: Optional[float] = None) -> Dict:
    """CEs, mCE and relative mCE from a model's top-1 errors in % (``errors[corruption][severity]``,
    any subset of corruptions and severities) and its clean error in % (None: no relative numbers).

    Returns ``ce`` and ``relative_ce`` per corruption present (relative: None without a clean error),
    ``severities`` per corruption, ``mce`` and ``relative_mce`` (None when they cannot be computed, and
    then ``mce_missing`` / ``relative_mce_missing`` say why), ``mean_error`` over every
    (corruption, severity) of the 15 present, and ``standard`` / ``extra``: the corruptions of each kind present."""
    unknown = sorted(set(errors) - set(ALEXNET_ERRORS))
    if unknown:
        raise ValueError(f"not ImageNet-C corruptions: {unknown}")
    ce, relative_ce, severities = {}, {}, {}
    for corruption in (*CORRUPTIONS, *EXTRA_CORRUPTIONS):
        if not errors.get(corruption):
            continue
        present = sorted(errors[corruption])
        if not set(present) <= set(SEVERITIES):
            raise ValueError(f"{corruption}: severities must be among {SEVERITIES}, got {present}")
        model = [errors[corruption][s] for s in present]
        alexnet = [100.0 * ALEXNET_ERRORS[corruption][s - 1] for s in present]
        severities[corruption] = present
        ce[corruption] = 100.0 * sum(model) / sum(alexnet)
        relative_ce[corruption] = None if clean_error is None else \
            100.0 * sum(e - clean_error for e in model) / sum(a - 100.0 * ALEXNET_CLEAN_ERROR for a in alexnet)
    standard = [c for c in CORRUPTIONS if c in ce]
    incomplete = [c if c not in ce else f"{c} (severities {severities[c]})" for c in CORRUPTIONS
                  if severities.get(c) != list(SEVERITIES)]
    mce_missing = None if not incomplete else \
        f"mCE needs all 15 corruptions at severities 1-5; missing or incomplete: {', '.join(incomplete)}"
    relative_missing = mce_missing or (None if clean_error is not None else
                                       "relative mCE needs the clean error: pass --imagenet-val")
    values = [errors[c][s] for c in standard for s in severities[c]]
    return {
        "ce": ce, "relative_ce": relative_ce, "severities": severities,
        "mce": None if mce_missing else sum(ce[c] for c in CORRUPTIONS) / len(CORRUPTIONS),
        "relative_mce": None if relative_missing else sum(relative_ce[c] for c in CORRUPTIONS) / len(CORRUPTIONS),
        "mce_missing": mce_missing, "relative_mce_missing": relative_missing,
        "mean_error": sum(values) / len(values) if values else None,
        "standard": standard, "extra": [c for c in EXTRA_CORRUPTIONS if c in ce],
    }

