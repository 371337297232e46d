import warnings

import numpy as np
import pytest

from ml.anomaly.calibration import cooldown
from ml.anomaly.seasonal import rolling_baseline, seasonal_expected


@pytest.mark.parametrize("start", [0, 1, 5, 63, 64, 65, 199, 200])
def test_rolling_baseline_from_start_equals_the_full_computation_sliced(start: int) -> None:
    # Scoring computes only the new points; it must not change a single value.
    values = np.random.default_rng(start).normal(size=200).cumsum()
    full = rolling_baseline(values, 64, 0.01)
    part = rolling_baseline(values, 64, 0.01, start)
    np.testing.assert_array_equal(part.expected, full.expected[start:])
    np.testing.assert_array_equal(part.scale, full.scale[start:])


@pytest.mark.parametrize("cycles", [1, 2, 3, 4])
def test_seasonal_expected_equals_nanmedian_of_the_lags(cycles: int) -> None:
    # Regression guard for the vectorised NaN-aware median that replaced np.nanmedian.
    values = np.random.default_rng(cycles).normal(size=150)
    got = seasonal_expected(values, 24, cycles)
    lagged = np.full((cycles, 150), np.nan)
    for k in range(1, cycles + 1):
        lagged[k - 1, 24 * k :] = values[: 150 - 24 * k]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmedian(lagged, axis=0)
    np.testing.assert_allclose(got, expected, equal_nan=True)


@pytest.mark.parametrize("points", [1, 3, 64])
def test_cooldown_keeps_only_scores_above_every_recent_one(points: int) -> None:
    scores = np.random.default_rng(points).random(200)
    got = cooldown(scores, points)
    for i, value in enumerate(scores):
        recent = scores[max(0, i - points) : i]
        assert got[i] == (value if (recent.size == 0 or value > recent.max()) else 0.0)
