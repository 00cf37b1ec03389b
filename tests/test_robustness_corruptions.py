"""ImageNet-C arithmetic (CE, mCE, relative mCE) against hand computations, and the AlexNet table."""
import pytest

from robustness.corruptions import (ALEXNET_CLEAN_ERROR, ALEXNET_ERRORS, ALEXNET_MEAN_ERRORS, CORRUPTIONS,
                                    EXTRA_CORRUPTIONS, SEVERITIES, corruption_summary)

# The published averages, typed again from the reference README (the order of CORRUPTIONS).
PUBLISHED_MEANS = [0.886428, 0.894468, 0.922640, 0.819880, 0.826268, 0.785948, 0.798360, 0.866816, 0.826572,
                   0.819324, 0.564592, 0.853204, 0.646056, 0.717840, 0.606500]


def every(error: float, corruptions=CORRUPTIONS):
    return {c: {s: error for s in SEVERITIES} for c in corruptions}


def test_alexnet_table_is_consistent():
    assert len(CORRUPTIONS) == 15 and len(EXTRA_CORRUPTIONS) == 4
    assert set(ALEXNET_ERRORS) == set(ALEXNET_MEAN_ERRORS) == set(CORRUPTIONS) | set(EXTRA_CORRUPTIONS)
    assert [ALEXNET_MEAN_ERRORS[c] for c in CORRUPTIONS] == PUBLISHED_MEANS
    # Each published average is the mean of the five per-severity errors: a mistyped digit shows here.
    for corruption, errors in ALEXNET_ERRORS.items():
        assert len(errors) == 5
        assert sum(errors) / 5 == pytest.approx(ALEXNET_MEAN_ERRORS[corruption], abs=1e-6), corruption
    assert ALEXNET_CLEAN_ERROR == pytest.approx(1 - 0.5652, abs=1e-4)  # torchvision AlexNet's 56.52 % top-1


def test_mce_and_relative_mce_by_hand():
    summary = corruption_summary(every(50.0), clean_error=20.0)
    # CE_c = sum_s 50 / sum_s (100 * AlexNet_s) = 50 / mean AlexNet error.
    assert summary["ce"]["gaussian_noise"] == pytest.approx(100 * 250 / (100 * (0.69528 + 0.82542 + 0.93554
                                                                                 + 0.98138 + 0.99452)))
    assert summary["ce"]["brightness"] == pytest.approx(50 / 0.564592)
    assert summary["mce"] == pytest.approx(sum(50 / m for m in PUBLISHED_MEANS) / 15)
    # Relative: sum_s (50 - 20) / sum_s (100 A_s - 43.48) = 30 / (100 mean - 43.48).
    assert summary["relative_ce"]["fog"] == pytest.approx(100 * 30 / (81.9324 - 43.48))
    assert summary["relative_mce"] == pytest.approx(sum(100 * 30 / (100 * m - 43.48) for m in PUBLISHED_MEANS) / 15)
    assert summary["mean_error"] == pytest.approx(50.0)
    assert summary["mce_missing"] is None and summary["relative_mce_missing"] is None


def test_severity_weights_follow_alexnet_per_severity():
    errors = every(0.0)
    errors["snow"] = {1: 10.0, 2: 20.0, 3: 30.0, 4: 40.0, 5: 50.0}
    ce = corruption_summary(errors)["ce"]["snow"]
    assert ce == pytest.approx(100 * 150 / (71.726 + 88.392 + 86.468 + 91.870 + 94.952))


def test_subset_gives_ces_but_no_mce():
    errors = every(50.0)
    del errors["fog"]
    errors["snow"] = {1: 30.0, 2: 40.0, 3: 50.0}
    summary = corruption_summary(errors, clean_error=20.0)
    assert summary["mce"] is None and summary["relative_mce"] is None
    assert "fog" in summary["mce_missing"] and "snow (severities [1, 2, 3])" in summary["mce_missing"]
    assert summary["relative_mce_missing"] == summary["mce_missing"]
    # Partial severities: both sums run over the severities present.
    assert summary["ce"]["snow"] == pytest.approx(100 * 120 / (71.726 + 88.392 + 86.468))
    assert summary["severities"]["snow"] == [1, 2, 3] and "fog" not in summary["ce"]


def test_extras_are_apart_and_clean_error_is_needed_for_relative():
    with_extras = corruption_summary({**every(50.0), **every(40.0, EXTRA_CORRUPTIONS)})
    alone = corruption_summary(every(50.0))
    assert with_extras["mce"] == pytest.approx(alone["mce"])  # the extras are not in mCE
    assert with_extras["extra"] == list(EXTRA_CORRUPTIONS)
    assert with_extras["ce"]["saturate"] == pytest.approx(40 / 0.658248)
    assert with_extras["mean_error"] == pytest.approx(50.0)  # over the 15 only
    assert with_extras["relative_mce"] is None and "--imagenet-val" in with_extras["relative_mce_missing"]
    assert with_extras["relative_ce"]["fog"] is None


def test_bad_names_and_severities_are_refused():
    with pytest.raises(ValueError, match="not ImageNet-C corruptions: \\['style'\\]"):
        corruption_summary({"style": {1: 10.0}})
    with pytest.raises(ValueError, match="fog: severities"):
        corruption_summary({"fog": {6: 10.0}})
