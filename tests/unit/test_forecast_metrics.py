"""Forecast accuracy metrics (ml.evaluation.metrics) against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ml.evaluation.metrics import (
    coverage,
    mape,
    mase,
    mase_scale,
    msis,
    owa,
    point_scores,
    smape,
)
from ml.forecast import SeasonalNaive


def test_smape_matches_hand_computation() -> None:
    # 200*10/210 and 200*20/380
    expected = (2000 / 210 + 4000 / 380) / 2
    assert smape([100, 200], [110, 180]) == pytest.approx(expected)


def test_smape_is_symmetric_in_sign_and_bounded() -> None:
    assert smape([100], [0]) == pytest.approx(200.0)
    assert smape([-5], [5]) == pytest.approx(200.0)
    assert smape([3, 3], [3, 3]) == 0.0


def test_smape_scores_exact_zero_forecast_of_zero_as_perfect() -> None:
    assert smape([0, 10], [0, 10]) == 0.0


def test_mape_matches_hand_computation() -> None:
    assert mape([100, 200], [110, 180]) == pytest.approx(10.0)


def test_mape_is_nan_when_an_actual_is_zero() -> None:
    assert math.isnan(mape([0, 200], [1, 180]))


def test_mase_scale_is_the_in_sample_seasonal_naive_mae() -> None:
    assert mase_scale([1, 2, 4, 7, 11, 16], season=2) == pytest.approx((3 + 5 + 7 + 9) / 4)
    assert mase_scale([1, 2, 4, 7], season=1) == pytest.approx((1 + 2 + 3) / 3)


def test_mase_matches_hand_computation() -> None:
    # scale = mean(|3-1|, |4-2|) = 2; forecast MAE = (1 + 3) / 2 = 2
    assert mase([10, 10], [11, 7], insample=[1, 2, 3, 4], season=2) == pytest.approx(1.0)


def test_mase_is_nan_for_an_exactly_repeating_insample() -> None:
    assert math.isnan(mase([1, 2], [1, 2], insample=[1, 2, 1, 2], season=2))


def test_mase_scale_needs_more_than_one_season() -> None:
    with pytest.raises(ValueError, match="more than season"):
        mase_scale([1, 2], season=2)


def test_msis_matches_hand_computation() -> None:
    # widths 2 and 2; the second actual is 1 above the upper bound: penalty 2/0.05 * 1 = 40
    value = msis([5, 8], [4, 5], [6, 7], insample=[1, 2, 3, 4], season=2, level=0.95)
    assert value == pytest.approx(((2 + 0) + (2 + 40)) / 2 / 2)


def test_coverage_counts_bounds_as_inside() -> None:
    assert coverage([1, 2, 3, 4], [1, 0, 4, 0], [2, 2, 5, 3]) == pytest.approx(0.5)


def test_owa_of_naive2_against_itself_is_one() -> None:
    assert owa(18.383, 2.395, 18.383, 2.395) == pytest.approx(1.0)
    assert owa(9.0, 1.2, 18.0, 2.4) == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("actual", "forecast"),
    [([1, 2], [1]), ([], []), ([1, np.nan], [1, 2]), ([[1, 2]], [[1, 2]])],
)
def test_metrics_reject_malformed_input(actual: list, forecast: list) -> None:
    with pytest.raises(ValueError):
        smape(actual, forecast)


def test_point_scores_bundle_the_three_point_metrics() -> None:
    scores = point_scores([100, 200], [110, 180], insample=[1, 2, 4, 7], season=1)
    assert scores.mape == pytest.approx(10.0)
    assert scores.smape == pytest.approx(smape([100, 200], [110, 180]))
    assert scores.mase == pytest.approx(15 / 2)


def test_seasonal_naive_reproduces_hand_computed_smape_and_mase() -> None:
    history = pd.Series([10.0, 20.0, 30.0, 12.0, 22.0, 31.0])
    forecast = SeasonalNaive(season=3).forecast(history, horizon=4)
    np.testing.assert_array_equal(forecast.point, [12.0, 22.0, 31.0, 12.0])

    actual = [14.0, 20.0, 31.0, 10.0]
    # |e| = 2, 2, 0, 2; sMAPE terms 200*2/26, 200*2/42, 0, 200*2/22
    assert smape(actual, forecast.point) == pytest.approx((400 / 26 + 400 / 42 + 0 + 400 / 22) / 4)
    # scale: mean(|12-10|, |22-20|, |31-30|) = 5/3; forecast MAE = 6/4
    assert mase(actual, forecast.point, history, season=3) == pytest.approx((6 / 4) / (5 / 3))
