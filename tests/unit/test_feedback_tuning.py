import pytest

from ml.anomaly.feedback import tune_thresholds


def test_threshold_rises_just_above_the_highest_false_positive() -> None:
    tuned = tune_thresholds({"a": [0.55, 0.62], "b": []}, 0.5)
    assert tuned == {"a": pytest.approx(0.64)}


def test_threshold_is_capped_so_out_of_range_values_still_alert() -> None:
    assert tune_thresholds({"a": [1.0]}, 0.5, ceiling=0.9) == {"a": 0.9}


def test_false_positive_below_the_base_threshold_changes_nothing() -> None:
    # An alert can only have been raised at or above the base; a lower score is stale feedback.
    assert tune_thresholds({"a": [0.3]}, 0.5) == {}


def test_bad_bounds_raise() -> None:
    with pytest.raises(ValueError):
        tune_thresholds({}, 0.95, ceiling=0.9)
