"""Forecasters with prediction intervals, their rolling-origin backtests and forecast plots.

Every forecaster is a frozen dataclass with ``forecast(y, horizon) -> Forecast``: the seasonal
naive (the baseline), M4's Naive2, SARIMA, Prophet and their median :class:`Ensemble` (the
published model, :func:`default_ensemble`). Prophet is imported lazily, on its first forecast.
"""

from ml.forecast.backtest import BacktestFold, BacktestResult, rolling_origin_backtest
from ml.forecast.base import Forecast, Forecaster
from ml.forecast.ensemble import Ensemble, default_ensemble
from ml.forecast.naive import AdaptiveSeasonalNaive, Naive2, RunRate, SeasonalNaive
from ml.forecast.prophet_model import ProphetForecaster
from ml.forecast.sarima import Sarima

__all__ = [
    "AdaptiveSeasonalNaive",
    "BacktestFold",
    "BacktestResult",
    "Ensemble",
    "Forecast",
    "Forecaster",
    "Naive2",
    "ProphetForecaster",
    "RunRate",
    "Sarima",
    "SeasonalNaive",
    "default_ensemble",
    "rolling_origin_backtest",
]
