"""Seasonal ARIMA (statsmodels SARIMAX), made fast enough for hourly data with a 24-hour season.

Statsmodels' exact state-space SARIMA(1,0,1)(0,1,1)_24 keeps the seasonal difference as ~25 extra
Kalman states and took about 19 s per M4 Hourly series (measured on one contended core): hours
for 414 series, let alone backtests. The model here is the same multiplicative seasonal ARIMA
(by default that "airline-like" (1,0,1)(0,1,1)_m, on log values), fitted with:

* ``simple_differencing=True``: the differences are taken before fitting, so the Kalman filter
  carries only the ARMA states;
* ``concentrate_scale=True``: the innovation variance is profiled out of the likelihood;
* the last ``history_seasons`` seasons only (default 14: two weeks of hourly data).

Measured on M4 Hourly (train-only validation: the last 48 h of each train series forecast from
the rest): 0.9-1.3 s per series with 14 seasons, about 2.3 s with the full history; sMAPE / MASE
12.42 / 0.938 with 14 seasons, 12.33 / 0.936 with 21, 12.46 / 0.945 with the full history.

Point forecasts of the differenced series are integrated back exactly; the forecast variance
comes from the psi (MA-infinity) weights of the full integrated model, which matches
statsmodels' own integrated forecast standard errors to within the filter's start-up effects.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from statsmodels.tools.sm_exceptions import ConvergenceWarning
from statsmodels.tsa.arima_process import arma2ma
from statsmodels.tsa.statespace.sarimax import SARIMAX

from ml.forecast.base import (
    Forecast,
    Transform,
    build_forecast,
    future_index,
    gaussian_interval,
    use_log,
    validate_history,
)
from ml.forecast.naive import is_seasonal, multiplicative_seasonal_indices

# Non-seasonal fits keep this many trailing points (years of yearly data, decades of weekly).
_NON_SEASONAL_HISTORY = 500


def _lag_polynomial(coefficients: np.ndarray, sign: float, lag: int = 1) -> np.ndarray:
    """``1 + sign * (c1 B^lag + c2 B^(2 lag) + ...)`` as ascending coefficients."""
    polynomial = np.zeros(coefficients.size * lag + 1)
    polynomial[0] = 1.0
    polynomial[lag::lag] = sign * coefficients
    return polynomial


def _difference_polynomial(d: int, seasonal_d: int, season: int) -> np.ndarray:
    """``(1 - B)^d (1 - B^season)^D`` as ascending coefficients."""
    polynomial = np.array([1.0])
    for _ in range(d):
        polynomial = np.convolve(polynomial, [1.0, -1.0])
    seasonal = np.zeros(season + 1)
    seasonal[0], seasonal[season] = 1.0, -1.0
    for _ in range(seasonal_d):
        polynomial = np.convolve(polynomial, seasonal)
    return polynomial


def _integrate(history: np.ndarray, differenced: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Undo ``delta(B) y = w`` forward in time: ``y[t] = w[t] - sum_k delta[k] y[t - k]``."""
    order = delta.size - 1
    path = list(history[-order:]) if order else []
    for w in differenced:
        path.append(w - sum(delta[k] * path[-k] for k in range(1, order + 1)))
    return np.asarray(path[order:])


@dataclass(frozen=True)
class Sarima:
    """Seasonal ARIMA ``order x seasonal_order _season`` fitted by exact maximum likelihood.

    Attributes:
        season: seasonal period m (24 for hourly data, 7 for daily; 1: non-seasonal ARIMA).
        order: non-seasonal (p, d, q).
        seasonal_order: seasonal (P, D, Q).
        history_seasons: fit on at most this many trailing seasons (``None``: all data).
        transform: ``auto`` models log values when the series is strictly positive.
        level: nominal coverage of the prediction interval.
        maxiter: cap on optimiser iterations (L-BFGS).
        seasonal_test: keep the seasonal part only when M4's autocorrelation test finds the
            season in the history (otherwise fit the non-seasonal ARIMA).
        max_state_season: longer seasons (52 weeks) are not modelled in the state space, whose
            seasonal MA makes every Kalman step cost O(season^2) (a 52-week SARIMA took over a
            minute per series): the series is divided by classical multiplicative seasonal
            indices, forecast by the non-seasonal ARIMA and reseasonalised (as M4's benchmarks
            handle seasonality), needing strictly positive values.
    """

    season: int
    order: tuple[int, int, int] = (1, 0, 1)
    seasonal_order: tuple[int, int, int] = (0, 1, 1)
    history_seasons: int | None = 14
    transform: Transform = "auto"
    level: float = 0.95
    maxiter: int = 50
    seasonal_test: bool = False
    max_state_season: int = 24

    @property
    def name(self) -> str:
        return "sarima"

    def seasonal(self, values: np.ndarray) -> bool:
        """Whether this fit keeps the seasonal part: a period above 1 and, with
        ``seasonal_test``, M4's autocorrelation test passed on ``values``."""
        return self.season > 1 and (not self.seasonal_test or is_seasonal(values, self.season))

    def _deseasonalised(self, y: pd.Series, values: np.ndarray, horizon: int) -> Forecast:
        if not (values > 0).all():
            raise ValueError("multiplicative seasonal adjustment needs strictly positive values")
        indices = multiplicative_seasonal_indices(values, self.season)
        future = np.resize(indices[-self.season :], horizon)
        adjusted = pd.Series(values / indices, index=y.index)
        base = replace(self, season=1).forecast(adjusted, horizon)
        return build_forecast(
            self.name,
            base.index,
            base.point * future,
            base.lower * future,
            base.upper * future,
            self.level,
            fitted_by="arima_deseasonalised",
        )

    def forecast(self, y: pd.Series, horizon: int) -> Forecast:
        (p, d, q), (big_p, big_d, big_q) = self.order, self.seasonal_order
        raw = validate_history(y, horizon, min_length=max(p, q) + d + big_d + 3)
        if self.seasonal(raw) and self.season > self.max_state_season:
            return self._deseasonalised(y, raw, horizon)
        if self.seasonal(raw):
            season, order, seasonal_order = self.season, self.order, self.seasonal_order
            min_length = d + (big_d + max(big_p, big_q) + 1) * season + max(p, q) + 2
            keep = None if self.history_seasons is None else self.history_seasons * season
        else:
            # No season to model (yearly data, a weekly series without a yearly cycle): the
            # seasonal difference becomes an ordinary one, ARIMA(p, d + D, q).
            season, order, seasonal_order = 1, (p, d + big_d, q), (0, 0, 0)
            min_length = d + big_d + max(p, q) + 3
            keep = _NON_SEASONAL_HISTORY
        (p, d, q), (big_p, big_d, big_q) = order, seasonal_order
        values = validate_history(y, horizon, min_length=min_length)
        logged = use_log(values, self.transform)
        series = np.log(values) if logged else values
        if keep is not None:
            series = series[-max(keep, min_length) :]

        with warnings.catch_warnings():
            # Non-convergence within maxiter still leaves a usable ML estimate; starting-value
            # notices are statsmodels' own fallbacks. Errors (e.g. a singular fit) propagate.
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", UserWarning)
            fitted = SARIMAX(
                series,
                order=order,
                seasonal_order=(*seasonal_order, season if season > 1 else 0),
                simple_differencing=True,
                concentrate_scale=True,
            ).fit(disp=False, maxiter=self.maxiter)
        differenced_forecast = np.asarray(fitted.forecast(horizon), dtype=float)

        delta = _difference_polynomial(d, big_d, season)
        mean = _integrate(series, differenced_forecast, delta)

        ar = np.convolve(
            _lag_polynomial(np.asarray(fitted.arparams if p else []), -1.0),
            _lag_polynomial(np.asarray(fitted.seasonalarparams if big_p else []), -1.0, season),
        )
        ma = np.convolve(
            _lag_polynomial(np.asarray(fitted.maparams if q else []), 1.0),
            _lag_polynomial(np.asarray(fitted.seasonalmaparams if big_q else []), 1.0, season),
        )
        psi = arma2ma(np.convolve(ar, delta), ma, lags=horizon)
        std = np.sqrt(float(fitted.scale) * np.cumsum(psi**2))
        lower, upper = gaussian_interval(mean, std, self.level)
        if logged:
            mean, lower, upper = np.exp(mean), np.exp(lower), np.exp(upper)
        return build_forecast(
            self.name,
            future_index(y, horizon),
            mean,
            lower,
            upper,
            self.level,
            fitted_by="" if season > 1 else "arima",
        )
