"""Traffic that stops is flagged by a Poisson count test; a quiet hour is not."""

from __future__ import annotations

import numpy as np
import pytest

from ml.anomaly.count_test import traffic_stop_test


def test_a_busy_route_that_stops_is_flagged_and_a_quiet_hour_is_not() -> None:
    expected = np.array([50.0, 400.0, 2.0, 0.3, 13.0])
    observed = np.array([0.0, 0.0, 0.0, 0.0, 0.0])
    result = traffic_stop_test(observed, expected)
    assert result.is_stop.tolist() == [True, True, False, False, False]


def test_a_partial_drop_is_flagged_only_when_improbable() -> None:
    result = traffic_stop_test(np.array([80.0, 20.0]), np.array([100.0, 100.0]))
    # 80 of 100 expected is ordinary Poisson noise; 20 of 100 is not.
    assert result.is_stop.tolist() == [False, True]


def test_hours_at_their_forecast_are_never_flagged() -> None:
    rng = np.random.default_rng(0)
    expected = rng.uniform(0, 500, 10_000)
    observed = rng.poisson(expected)
    assert not traffic_stop_test(observed, expected).is_stop.any()


@pytest.mark.parametrize(
    ("observed", "expected"), [([1.0], [1.0, 2.0]), ([-1.0], [1.0]), ([np.nan], [1.0])]
)
def test_bad_inputs_are_refused(observed: list[float], expected: list[float]) -> None:
    with pytest.raises(ValueError):
        traffic_stop_test(np.array(observed), np.array(expected))
