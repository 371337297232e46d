"""Rolling-origin backtests: refit at several forecast origins, score each forecast.

The origins step back from the end of the series by ``step`` (default: the horizon, so the test
windows do not overlap); each fold trains on everything before its origin and is scored on the
next ``horizon`` points with MAPE, sMAPE and MASE (scaled by the fold's own training data) and
the interval's empirical coverage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml.evaluation.metrics import PointScores, coverage, point_scores
from ml.forecast.base import Forecast, Forecaster


@dataclass(frozen=True, eq=False)
class BacktestFold:
    """One origin: the forecast made with data up to ``origin`` and its scores."""

    origin: object
    train_size: int
    forecast: Forecast
    actual: np.ndarray
    scores: PointScores
    coverage: float


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """A forecaster's rolling-origin backtest on one series; the averages are over folds.

    ``mape`` is ``nan`` when some scored actual is 0 (MAPE is undefined there); ``mase`` is
    ``nan`` when a fold's training data has no seasonal variation.
    """

    model: str
    horizon: int
    season: int
    folds: tuple[BacktestFold, ...]
    mape: float
    smape: float
    mase: float
    coverage: float

    def to_frame(self) -> pd.DataFrame:
        """One row per fold: origin, train_size, mape, smape, mase, coverage."""
        return pd.DataFrame(
            {
                "model": self.model,
                "origin": [fold.origin for fold in self.folds],
                "train_size": [fold.train_size for fold in self.folds],
                "mape": [fold.scores.mape for fold in self.folds],
                "smape": [fold.scores.smape for fold in self.folds],
                "mase": [fold.scores.mase for fold in self.folds],
                "coverage": [fold.coverage for fold in self.folds],
            }
        )


def rolling_origin_backtest(
    forecaster: Forecaster,
    y: pd.Series,
    horizon: int,
    season: int,
    n_origins: int = 3,
    step: int | None = None,
) -> BacktestResult:
    """Backtest ``forecaster`` on ``y`` from ``n_origins`` origins, the last one ``horizon``
    points before the end.

    Args:
        forecaster: the model to refit at every origin.
        y: the full history (regular, without gaps).
        horizon: steps forecast from each origin.
        season: seasonal period used for the MASE scale.
        n_origins: number of forecast origins.
        step: distance between consecutive origins (default ``horizon``).

    Raises:
        ValueError: the series is too short for the requested origins (each fold needs more than
            ``season`` training points). A forecaster's own error propagates unchanged.
    """
    step = horizon if step is None else step
    if n_origins < 1 or step < 1 or horizon < 1:
        raise ValueError("n_origins, step and horizon must be >= 1")
    first_origin = len(y) - horizon - (n_origins - 1) * step
    if first_origin <= season:
        raise ValueError(
            f"{len(y)} points cannot hold {n_origins} origins {step} apart with horizon "
            f"{horizon} and more than season={season} training points each"
        )
    folds = []
    for train_size in range(first_origin, len(y) - horizon + 1, step):
        train = y.iloc[:train_size]
        actual = y.iloc[train_size : train_size + horizon].to_numpy(dtype=float)
        forecast = forecaster.forecast(train, horizon)
        folds.append(
            BacktestFold(
                origin=train.index[-1],
                train_size=train_size,
                forecast=forecast,
                actual=actual,
                scores=point_scores(actual, forecast.point, train.to_numpy(dtype=float), season),
                coverage=coverage(actual, forecast.lower, forecast.upper),
            )
        )

    def mean(values: list[float]) -> float:
        return math.fsum(values) / len(values)

    return BacktestResult(
        model=forecaster.name,
        horizon=horizon,
        season=season,
        folds=tuple(folds),
        mape=mean([fold.scores.mape for fold in folds]),
        smape=mean([fold.scores.smape for fold in folds]),
        mase=mean([fold.scores.mase for fold in folds]),
        coverage=mean([fold.coverage for fold in folds]),
    )
