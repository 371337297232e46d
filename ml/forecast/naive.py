"""Benchmark forecasters: the seasonal naive (the baseline every model must beat) and M4's Naive2.

Both follow the M4 competition's R benchmark code (github.com/Mcompetitions/M4-methods,
"Benchmarks and Evaluation.R") so their M4 scores reproduce the published figures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml.forecast.base import (
    Forecast,
    build_forecast,
    future_index,
    gaussian_interval,
    residual_std,
    validate_history,
)

# M4's seasonality test is one-sided at 90%: |acf(m)| above 1.645 standard errors.
_SEASONALITY_T_CRIT = 1.645


def seasonal_naive_point(values: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """The last full season repeated over the horizon: ``f[T + h] = y[T + h - k*season]``."""
    return np.resize(values[-season:], horizon)


@dataclass(frozen=True)
class SeasonalNaive:
    """Each step forecast by the value one season earlier (``season=1``: the naive forecast).

    The interval assumes independent normal seasonal-difference errors: the standard deviation
    of the in-sample residuals ``y[t] - y[t - season]`` times ``sqrt(k + 1)`` for a step ``k``
    whole seasons ahead (Hyndman & Athanasopoulos, FPP3 section 5.5).
    """

    season: int
    level: float = 0.95

    @property
    def name(self) -> str:
        return "seasonal_naive" if self.season > 1 else "naive"

    def forecast(self, y: pd.Series, horizon: int) -> Forecast:
        values = validate_history(y, horizon, min_length=self.season + 2)
        point = seasonal_naive_point(values, horizon, self.season)
        sigma = residual_std(values[self.season :] - values[: -self.season])
        seasons_ahead = np.arange(horizon) // self.season
        lower, upper = gaussian_interval(point, sigma * np.sqrt(seasons_ahead + 1), self.level)
        return build_forecast(self.name, future_index(y, horizon), point, lower, upper, self.level)


@dataclass(frozen=True)
class AdaptiveSeasonalNaive:
    """The seasonal naive at whichever of ``seasons`` fits the series' recent past best.

    LLM traffic repeats daily and weekly: a Friday-to-Saturday forecast under a 24-hour season
    copies a weekday onto the weekend. On each forecast, every candidate season's in-sample
    error ``mean |y[t] - y[t - season]|`` is measured over the same last ``compare`` points
    (only points every candidate can reach), and the best season forecasts. A series without a
    weekly cycle (most of M4 Hourly) keeps the daily season; the hub's request rates take the
    weekly one. Falls back to the seasons the history is long enough for.

    Args:
        seasons: candidate periods, e.g. ``(24, 168)``.
        level: nominal coverage of the interval.
        compare: points of in-sample error compared.
    """

    seasons: tuple[int, ...]
    level: float = 0.95
    compare: int = 168

    @property
    def name(self) -> str:
        return "adaptive_naive"

    def season_for(self, values: np.ndarray) -> int:
        """The candidate season with the smallest recent in-sample seasonal-naive error."""
        usable = [s for s in sorted(self.seasons) if len(values) >= s + 2]
        if not usable:
            raise ValueError(f"history of {len(values)} points is shorter than any season + 2")
        points = min(self.compare, len(values) - max(usable))
        errors = {
            s: float(np.mean(np.abs(values[-points:] - values[-points - s : -s]))) for s in usable
        }
        return min(errors, key=lambda s: (errors[s], s))

    def forecast(self, y: pd.Series, horizon: int) -> Forecast:
        values = validate_history(y, horizon, min_length=min(self.seasons) + 2)
        chosen = SeasonalNaive(season=self.season_for(values), level=self.level).forecast(
            y, horizon
        )
        return build_forecast(
            self.name, chosen.index, chosen.point, chosen.lower, chosen.upper, self.level
        )


def autocorrelation(values: np.ndarray, max_lag: int) -> np.ndarray:
    """Sample autocorrelations at lags 1..max_lag (R's ``acf``: demeaned, biased denominator)."""
    x = values - values.mean()
    denominator = float(np.dot(x, x))
    if denominator == 0:
        return np.zeros(max_lag)
    return np.array([np.dot(x[:-k], x[k:]) / denominator for k in range(1, max_lag + 1)])


def is_seasonal(values: np.ndarray, season: int) -> bool:
    """M4's 90% autocorrelation test for seasonality at lag ``season``.

    Seasonal when the lag-``season`` autocorrelation exceeds 1.645 times its standard error under
    Bartlett's formula; never for fewer than three seasons of data or ``season <= 1``.
    """
    if season <= 1 or values.size < 3 * season:
        return False
    acf = autocorrelation(values, season)
    limit = (
        _SEASONALITY_T_CRIT
        / np.sqrt(values.size)
        * np.sqrt(1 + 2 * float(np.sum(acf[: season - 1] ** 2)))
    )
    return bool(abs(acf[season - 1]) > limit)


def multiplicative_seasonal_indices(values: np.ndarray, season: int) -> np.ndarray:
    """Seasonal indices of a classical multiplicative decomposition (R's ``decompose``).

    The trend is the centred moving average over one season (a 2 x m average for even m); each
    position in the cycle, counted from the first observation, gets the mean of ``y / trend``
    there, normalised so the indices average 1. Returns one index per observation.
    """
    if values.size < 2 * season:
        raise ValueError(f"need two seasons ({2 * season} points) to decompose, got {values.size}")
    if season % 2 == 0:
        weights = np.r_[0.5, np.ones(season - 1), 0.5] / season
    else:
        weights = np.ones(season) / season
    half = (weights.size - 1) // 2
    trend = np.full(values.size, np.nan)
    trend[half : values.size - half] = np.convolve(values, weights, mode="valid")
    ratio = values / trend
    figure = np.array([np.nanmean(ratio[position::season]) for position in range(season)])
    figure = figure / figure.mean()
    return np.resize(figure, values.size)


@dataclass(frozen=True)
class Naive2:
    """M4's Naive2: the naive forecast of the seasonally adjusted series, reseasonalised.

    When :func:`is_seasonal` says so, the series is divided by classical multiplicative
    seasonal indices, forecast by its last value and multiplied back by the indices of the
    matching positions of the last season; otherwise it is the plain naive forecast. The interval
    is the naive random-walk interval (residual sd of the adjusted series' first differences times
    ``sqrt(h)``), scaled by the same indices. M4 uses it as the OWA reference.
    """

    season: int
    level: float = 0.95

    @property
    def name(self) -> str:
        return "naive2"

    def forecast(self, y: pd.Series, horizon: int) -> Forecast:
        values = validate_history(y, horizon, min_length=3)
        if is_seasonal(values, self.season):
            indices = multiplicative_seasonal_indices(values, self.season)
            adjusted = values / indices
            future_indices = np.resize(indices[-self.season :], horizon)
        else:
            adjusted = values
            future_indices = np.ones(horizon)
        level_now = np.full(horizon, adjusted[-1])
        sigma = residual_std(np.diff(adjusted))
        lower, upper = gaussian_interval(
            level_now, sigma * np.sqrt(np.arange(1, horizon + 1)), self.level
        )
        return build_forecast(
            self.name,
            future_index(y, horizon),
            level_now * future_indices,
            lower * future_indices,
            upper * future_indices,
            self.level,
        )


@dataclass(frozen=True)
class RunRate:
    """The mean of the last ``window`` observations, flat over the horizon.

    For short histories where no seasonal model can be fitted (a tenant's first weeks of cost).
    The interval treats the recent values as independent draws around a constant level: their
    sample standard deviation times ``sqrt(1 + 1/n)`` (the prediction interval of a new draw).
    """

    window: int = 7
    level: float = 0.95

    @property
    def name(self) -> str:
        return "run_rate"

    def forecast(self, y: pd.Series, horizon: int) -> Forecast:
        values = validate_history(y, horizon, min_length=2)[-self.window :]
        point = np.full(horizon, values.mean())
        std = values.std(ddof=1) * np.sqrt(1 + 1 / values.size)
        lower, upper = gaussian_interval(point, np.full(horizon, std), self.level)
        return build_forecast(self.name, future_index(y, horizon), point, lower, upper, self.level)
