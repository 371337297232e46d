"""Traffic that stops is flagged by a Poisson count test; a quiet hour is not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.anomaly.count_test import seasonal_floor, stop_score, stopped_hours, traffic_stop_test


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


def _hourly(days: int, level: float, seed: int = 0) -> pd.Series:
    """Poisson counts with a daily cycle (peak 15:00, trough at a quarter of it)."""
    index = pd.date_range("2026-11-01", periods=24 * days, freq="h", tz="UTC")
    shape = 1.0 + 0.6 * np.cos(2 * np.pi * (index.hour - 15) / 24)
    rng = np.random.default_rng(seed)
    return pd.Series(rng.poisson(level * shape).astype(float), index=index)


def test_the_seasonal_floor_is_the_lowest_same_hour_of_the_previous_days() -> None:
    counts = _hourly(10, 100.0)
    floor = seasonal_floor(counts)
    at = counts.index[-1]
    same_hour = [counts[at - pd.Timedelta(days=k)] for k in range(1, 8)]
    assert floor[at] == min(same_hour)
    # Fewer than three earlier days: no expectation, no test.
    assert floor.iloc[: 24 * 3].isna().all() and floor.iloc[24 * 3 :].notna().all()


def test_a_busy_route_that_stops_is_flagged_and_a_quiet_one_at_night_is_not() -> None:
    busy = _hourly(10, 100.0)
    busy.iloc[-4:] = 0.0
    tested = stopped_hours(busy, 6)
    assert tested["is_stop"].tolist() == [False, False, True, True, True, True]
    assert (tested.loc[tested["is_stop"], "score"] >= 0.5).all()
    quiet = _hourly(10, 1.5, seed=1)
    quiet.iloc[-6:] = 0.0
    assert not stopped_hours(quiet, 6)["is_stop"].any()


def test_ordinary_weeks_raise_no_stop() -> None:
    for seed in range(5):
        counts = _hourly(21, 60.0, seed)
        # Weekends at 45% of a weekday, as the hub's traffic.
        counts[counts.index.dayofweek >= 5] = np.floor(counts[counts.index.dayofweek >= 5] * 0.45)
        assert not stopped_hours(counts)["is_stop"].any()


def test_stop_score_is_one_half_at_alpha() -> None:
    assert stop_score(np.array([1e-6]), 1e-6)[0] == pytest.approx(0.5)
    assert stop_score(np.array([1.0, 1e-30]), 1e-6).tolist() == [0.0, 1.0]
