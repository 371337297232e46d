"""Forecaster behaviour on short synthetic seasonal series: shapes, intervals, sane accuracy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.evaluation.metrics import coverage, mase, smape
from ml.forecast import (
    AdaptiveSeasonalNaive,
    Ensemble,
    Forecast,
    Forecaster,
    Naive2,
    ProphetForecaster,
    RunRate,
    Sarima,
    SeasonalNaive,
    default_ensemble,
    rolling_origin_backtest,
)
from ml.forecast.naive import is_seasonal, multiplicative_seasonal_indices
from ml.forecast.plots import plot_forecast, save_forecast_plot


def _seasonal_series(
    periods: int, season: int, freq: str, seed: int = 0, noise: float = 3.0
) -> pd.Series:
    """Level 100, a slow upward trend, a season-long sine profile, Gaussian noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(periods)
    values = (
        100.0 + 0.02 * t + 25.0 * np.sin(2 * np.pi * t / season) + rng.normal(0.0, noise, periods)
    )
    return pd.Series(values, index=pd.date_range("2025-01-06", periods=periods, freq=freq))


HOURLY = {"season": 24, "freq": "h", "periods": 24 * 21, "horizon": 48}
DAILY_WEEK = {"season": 7, "freq": "D", "periods": 7 * 16, "horizon": 7}
DAILY_MONTH = {"season": 7, "freq": "D", "periods": 7 * 16, "horizon": 30}


def _forecasters(season: int) -> list[Forecaster]:
    return [
        SeasonalNaive(season=season),
        Naive2(season=season),
        Sarima(season=season),
        ProphetForecaster(),
        default_ensemble(season),
        RunRate(window=season),
    ]


CASES = [
    pytest.param(setting, index, id=f"{name}-{model}")
    for name, setting in (("hourly48", HOURLY), ("daily7", DAILY_WEEK), ("daily30", DAILY_MONTH))
    for index, model in enumerate(
        ["seasonal_naive", "naive2", "sarima", "prophet", "ensemble", "run_rate"]
    )
]


@pytest.mark.parametrize(("setting", "model_index"), CASES)
def test_forecast_has_horizon_length_and_contains_point_in_interval(
    setting: dict, model_index: int
) -> None:
    series = _seasonal_series(
        setting["periods"] + setting["horizon"], setting["season"], setting["freq"]
    )
    history, actual = series.iloc[: -setting["horizon"]], series.iloc[-setting["horizon"] :]
    forecaster = _forecasters(setting["season"])[model_index]

    forecast = forecaster.forecast(history, setting["horizon"])

    assert isinstance(forecast, Forecast)
    assert forecast.model == forecaster.name
    assert forecast.horizon == setting["horizon"]
    assert forecast.index.equals(actual.index)
    assert (forecast.lower <= forecast.point).all()
    assert (forecast.point <= forecast.upper).all()
    assert (forecast.upper - forecast.lower > 0).all()
    # Nothing crazy: forecasts stay in the neighbourhood of the data.
    span = history.max() - history.min()
    assert history.min() - span < forecast.point.min()
    assert forecast.point.max() < history.max() + span


SEASONAL_MODELS = ["seasonal_naive", "naive2", "sarima", "prophet", "ensemble"]


@pytest.mark.parametrize("setting", [HOURLY, DAILY_MONTH], ids=["hourly48", "daily30"])
@pytest.mark.parametrize("model_index", range(5), ids=SEASONAL_MODELS)
def test_seasonal_models_forecast_a_clean_seasonal_series_well(
    setting: dict, model_index: int
) -> None:
    series = _seasonal_series(
        setting["periods"] + setting["horizon"], setting["season"], setting["freq"], seed=1
    )
    history, actual = series.iloc[: -setting["horizon"]], series.iloc[-setting["horizon"] :]
    forecast = _forecasters(setting["season"])[model_index].forecast(history, setting["horizon"])

    assert smape(actual, forecast.point) < 8.0
    assert mase(actual, forecast.point, history, setting["season"]) < 1.5
    assert coverage(actual, forecast.lower, forecast.upper) >= 0.8


def test_model_forecasts_beat_a_flat_mean_on_a_seasonal_series() -> None:
    series = _seasonal_series(24 * 21 + 48, 24, "h", seed=2)
    history, actual = series.iloc[:-48], series.iloc[-48:]
    flat = smape(actual, np.full(48, history.mean()))
    for forecaster in (Sarima(season=24), ProphetForecaster(), default_ensemble(24)):
        assert smape(actual, forecaster.forecast(history, 48).point) < flat / 2


def test_sarima_interval_widens_with_the_horizon() -> None:
    series = _seasonal_series(24 * 21, 24, "h", seed=3)
    forecast = Sarima(season=24).forecast(series, 48)
    width = forecast.upper - forecast.lower
    assert width[-1] > width[0]


def test_seasonal_naive_interval_steps_up_each_season() -> None:
    series = _seasonal_series(24 * 10, 24, "h", seed=4)
    forecast = SeasonalNaive(season=24).forecast(series, 48)
    width = forecast.upper - forecast.lower
    assert width[:24] == pytest.approx(np.full(24, width[0]))
    assert width[24] == pytest.approx(width[0] * np.sqrt(2))


def test_ensemble_takes_the_stepwise_median_of_its_members() -> None:
    index = pd.RangeIndex(10, 12)
    members = [
        Forecast("a", index, np.array([1.0, 5.0]), np.array([0.0, 4.0]), np.array([2.0, 6.0])),
        Forecast("b", index, np.array([2.0, 9.0]), np.array([1.0, 8.0]), np.array([3.0, 12.0])),
        Forecast("c", index, np.array([9.0, 6.0]), np.array([5.0, 1.0]), np.array([9.5, 7.0])),
    ]
    ensemble = Ensemble(members=(SeasonalNaive(1), SeasonalNaive(2), SeasonalNaive(3)))
    combined = ensemble.combine(members)

    np.testing.assert_array_equal(combined.point, [2.0, 6.0])
    np.testing.assert_array_equal(combined.lower, [1.0, 4.0])
    np.testing.assert_array_equal(combined.upper, [3.0, 7.0])


def test_ensemble_mean_widens_an_interval_that_misses_the_point() -> None:
    index = pd.RangeIndex(0, 1)
    members = [
        Forecast("a", index, np.array([0.0]), np.array([-1.0]), np.array([0.0])),
        Forecast("b", index, np.array([10.0]), np.array([10.0]), np.array([11.0])),
    ]
    combined = Ensemble(members=(SeasonalNaive(1), SeasonalNaive(2)), combination="mean").combine(
        members
    )
    assert combined.lower[0] <= combined.point[0] <= combined.upper[0]


def test_forecast_rejects_an_interval_without_its_point() -> None:
    with pytest.raises(ValueError, match="interval"):
        Forecast("x", pd.RangeIndex(0, 1), np.array([5.0]), np.array([6.0]), np.array([7.0]))


def test_prophet_needs_timestamps() -> None:
    with pytest.raises(ValueError, match="DatetimeIndex"):
        ProphetForecaster().forecast(pd.Series(np.arange(100.0)), 5)


@pytest.mark.parametrize("forecaster", [SeasonalNaive(24), Sarima(24), Naive2(24)])
def test_forecasters_refuse_gaps(forecaster: Forecaster) -> None:
    series = _seasonal_series(24 * 10, 24, "h")
    series.iloc[50] = np.nan
    with pytest.raises(ValueError, match="missing"):
        forecaster.forecast(series, 24)


def test_sarima_models_non_positive_series_without_log() -> None:
    series = _seasonal_series(24 * 14, 24, "h", seed=5) - 100.0
    forecast = Sarima(season=24).forecast(series, 24)
    assert (forecast.point < 60).all() and (forecast.point > -60).all()
    with pytest.raises(ValueError, match="positive"):
        Sarima(season=24, transform="log").forecast(series, 24)


def test_m4_seasonality_test_separates_seasonal_from_noise() -> None:
    assert is_seasonal(_seasonal_series(24 * 10, 24, "h").to_numpy(), 24)
    assert not is_seasonal(_seasonal_series(24 * 2, 24, "h").to_numpy(), 24)
    # A two-sided test at |t| > 1.645 flags about 10% of white-noise series.
    rng = np.random.default_rng(0)
    flagged = np.mean([is_seasonal(rng.normal(100.0, 1.0, 24 * 10), 24) for _ in range(300)])
    assert 0.04 < flagged < 0.18


def test_multiplicative_seasonal_indices_average_one_and_follow_the_profile() -> None:
    profile = np.array([0.5, 1.0, 1.5, 1.0])
    values = 200.0 * np.tile(profile, 12)
    indices = multiplicative_seasonal_indices(values, 4)
    assert indices[:4].mean() == pytest.approx(1.0)
    np.testing.assert_allclose(indices[:4], profile, rtol=1e-9)


def test_rolling_origin_backtest_scores_every_fold() -> None:
    series = _seasonal_series(24 * 14, 24, "h", seed=6)
    result = rolling_origin_backtest(SeasonalNaive(24), series, horizon=24, season=24, n_origins=3)

    assert [fold.train_size for fold in result.folds] == [24 * 11, 24 * 12, 24 * 13]
    assert result.folds[-1].origin == series.index[24 * 13 - 1]
    last = result.folds[-1]
    np.testing.assert_array_equal(last.actual, series.iloc[-24:].to_numpy())
    assert last.scores.smape == pytest.approx(smape(last.actual, last.forecast.point))
    assert result.smape == pytest.approx(np.mean([f.scores.smape for f in result.folds]))
    assert result.mase == pytest.approx(np.mean([f.scores.mase for f in result.folds]))
    assert list(result.to_frame().columns) == [
        "model",
        "origin",
        "train_size",
        "mape",
        "smape",
        "mase",
        "coverage",
    ]
    assert len(result.to_frame()) == 3


def test_rolling_origin_backtest_refuses_too_many_origins() -> None:
    series = _seasonal_series(24 * 4, 24, "h")
    with pytest.raises(ValueError, match="origins"):
        rolling_origin_backtest(SeasonalNaive(24), series, horizon=24, season=24, n_origins=3)


def test_forecast_plot_is_written_as_png(tmp_path) -> None:  # type: ignore[no-untyped-def]
    series = _seasonal_series(24 * 8, 24, "h")
    history, actual = series.iloc[:-48], series.iloc[-48:]
    forecast = SeasonalNaive(24).forecast(history, 48)

    figure = plot_forecast(forecast, history, actual, history_points=96)
    assert len(figure.axes[0].lines) == 3
    path = save_forecast_plot(tmp_path / "forecast.png", forecast, history, actual.to_numpy())
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="actual"):
        plot_forecast(forecast, history, actual.iloc[:5])


def _hourly(values: np.ndarray) -> pd.Series:
    return pd.Series(values, index=pd.date_range("2026-01-05", periods=len(values), freq="h"))


def test_adaptive_naive_takes_the_weekly_season_on_weekly_traffic() -> None:
    # Regression: a 24 h naive copied Friday onto Saturday (tenant MAPE 114% on Saturdays).
    hours = np.arange(24 * 21)
    weekend = ((hours // 24) % 7) >= 5
    rng = np.random.default_rng(0)
    values = (100 + 40 * np.sin(2 * np.pi * hours / 24)) * np.where(weekend, 0.45, 1.0)
    values = values + rng.normal(0, 1, len(hours))
    model = AdaptiveSeasonalNaive(seasons=(24, 168))
    assert model.season_for(values) == 168
    forecast = model.forecast(_hourly(values), 48)
    np.testing.assert_allclose(forecast.point, values[-168 : -168 + 48])


def test_adaptive_naive_keeps_the_daily_season_without_a_weekly_cycle() -> None:
    hours = np.arange(24 * 21)
    values = 100 + 40 * np.sin(2 * np.pi * hours / 24)
    values = values + np.random.default_rng(1).normal(0, 1, len(hours))
    assert AdaptiveSeasonalNaive(seasons=(24, 168)).season_for(values) == 24
    # Too short for a week: the daily season is the only candidate.
    assert AdaptiveSeasonalNaive(seasons=(24, 168)).season_for(values[:100]) == 24
