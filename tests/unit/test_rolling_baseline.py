import numpy as np
import pytest

from ml.anomaly.base import rolling_baseline


@pytest.mark.parametrize("start", [0, 1, 5, 63, 64, 65, 199, 200])
def test_rolling_baseline_from_start_equals_the_full_computation_sliced(start: int) -> None:
    # Scoring computes only the new points; it must not change a single value.
    values = np.random.default_rng(start).normal(size=200).cumsum()
    full = rolling_baseline(values, 64, 0.01)
    part = rolling_baseline(values, 64, 0.01, start)
    np.testing.assert_array_equal(part.expected, full.expected[start:])
    np.testing.assert_array_equal(part.scale, full.scale[start:])
