"""Forecast accuracy: the request-rate forecaster backtested per tenant and per route."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ml.evaluation.incidents.base import HOUR, SeriesMap
from ml.evaluation.incidents.detection import series_id
from ml.forecast.backtest import rolling_origin_backtest
from ml.forecast.base import Forecaster


def request_rate_series(
    train: SeriesMap, test: SeriesMap
) -> tuple[dict[str, pd.Series], dict[str, pd.Series]]:
    """Hourly request counts over both windows: per tenant (routes summed) and per route.

    Returns:
        ``(tenants, routes)`` keyed by tenant id and by the encoded route (``series_id``).
    """
    routes: dict[str, pd.Series] = {}
    tenants: dict[str, pd.Series] = {}
    for key in sorted(k for k in test if k.metric == "request_count"):
        both = pd.concat([train[key], test[key]]).astype(float)
        both.index = pd.DatetimeIndex(both.index, freq="h")
        routes[series_id(key)] = both
        # The tenant from the key itself: splitting the route id at "/" split tenant ids too.
        tenant = key.tenant_id
        tenants[tenant] = tenants[tenant] + both if tenant in tenants else both.copy()
    return tenants, routes


@dataclass(frozen=True)
class ForecastScore:
    """Backtest of one request-count series (folds averaged; percentages).

    ``mape`` is ``nan`` when some scored hour has 0 requests. ``poisson_floor_mape`` is the MAPE
    a perfect mean forecast would still make on Poisson counts of this size,
    ``100 * mean(sqrt(2 / (pi * y)))`` over the scored hours with ``y > 0`` (normal
    approximation of ``E|y - lambda| / lambda`` with ``lambda ~ y``). ``fold_weekdays`` names the
    UTC weekday of each fold's first forecast hour, ``fold_mape`` its MAPE.
    """

    level: str
    series_id: str
    mape: float
    smape: float
    mase: float
    abs_error: float
    actual_total: float
    mean_count: float
    poisson_floor_mape: float
    fold_weekdays: tuple[str, ...]
    fold_mape: tuple[float, ...]


def poisson_floor_mape(counts: np.ndarray) -> float:
    """Approximate MAPE (percent) of a perfect mean forecast of Poisson counts ``counts``."""
    positive = np.asarray(counts, dtype=float)
    positive = positive[positive > 0]
    if positive.size == 0:
        return math.nan
    return float(100.0 * np.mean(np.sqrt(2.0 / (math.pi * positive))))


def backtest_request_rate(
    series: Mapping[str, pd.Series],
    level: str,
    forecaster: Forecaster,
    test_hours: int,
    horizon: int = 24,
    season: int = 24,
    n_origins: int = 7,
    step: int = 24,
    on_series: Callable[[str], None] | None = None,
) -> list[ForecastScore]:
    """Rolling-origin backtest of ``forecaster``, origins ``step`` hours apart, the last one
    ``horizon`` hours before the end; every forecast lies in the last ``test_hours`` points.

    A forecaster's error propagates: a failed forecast fails the evaluation.

    Raises:
        ValueError: the origins would reach back before the test window.
    """
    if n_origins < 1 or horizon < 1 or step < 1:
        raise ValueError("n_origins, horizon and step must be >= 1")
    if (n_origins - 1) * step + horizon > test_hours:
        raise ValueError(
            f"{n_origins} origins {step} h apart with horizon {horizon} do not fit in the "
            f"{test_hours} test hours"
        )
    scores = []
    for name, values in series.items():
        result = rolling_origin_backtest(forecaster, values, horizon, season, n_origins, step)
        actual = np.concatenate([fold.actual for fold in result.folds])
        point = np.concatenate([fold.forecast.point for fold in result.folds])
        scores.append(
            ForecastScore(
                level=level,
                series_id=name,
                mape=result.mape,
                smape=result.smape,
                mase=result.mase,
                abs_error=float(np.abs(actual - point).sum()),
                actual_total=float(actual.sum()),
                mean_count=float(actual.mean()),
                poisson_floor_mape=poisson_floor_mape(actual),
                fold_weekdays=tuple(
                    (pd.Timestamp(fold.origin) + HOUR).day_name()[:3] for fold in result.folds
                ),
                fold_mape=tuple(fold.scores.mape for fold in result.folds),
            )
        )
        if on_series is not None:
            on_series(name)
    return scores


def _finite(values: Iterable[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def _mean(values: Iterable[float]) -> float:
    kept = _finite(values)
    return float(np.mean(kept)) if kept else math.nan


def _median(values: Iterable[float]) -> float:
    kept = _finite(values)
    return float(np.median(kept)) if kept else math.nan


def summarise_forecasts(scores: Sequence[ForecastScore]) -> dict[str, Any]:
    """Tenant- and route-level accuracy (percent) over the backtested series.

    Means and medians are over series where the figure is defined (``*_series_mape_defined``
    counts them); WAPE (``sum |error| / sum actual``) is volume-weighted over every series.
    """
    summary: dict[str, Any] = {}
    for level in ("tenant", "route"):
        chosen = [s for s in scores if s.level == level]
        total = sum(s.actual_total for s in chosen)
        wape = 100.0 * sum(s.abs_error for s in chosen) / total if total > 0 else math.nan
        prefix = level
        summary[f"{prefix}_series"] = len(chosen)
        summary[f"{prefix}_series_mape_defined"] = len(_finite(s.mape for s in chosen))
        if level == "tenant":
            summary["tenant_mape"] = _mean(s.mape for s in chosen)
            summary["tenant_mape_max"] = max(_finite(s.mape for s in chosen), default=math.nan)
            summary["tenant_smape"] = _mean(s.smape for s in chosen)
            summary["tenant_mase"] = _mean(s.mase for s in chosen)
        else:
            summary["route_mape_mean"] = _mean(s.mape for s in chosen)
            summary["route_mape_median"] = _median(s.mape for s in chosen)
            summary["route_smape_mean"] = _mean(s.smape for s in chosen)
            summary["route_mase_mean"] = _mean(s.mase for s in chosen)
        summary[f"{prefix}_wape"] = wape
        summary[f"poisson_floor_{prefix}_mape"] = _mean(s.poisson_floor_mape for s in chosen)
        summary[f"poisson_floor_{prefix}_mape_median"] = _median(
            s.poisson_floor_mape for s in chosen
        )
        summary[f"{prefix}_mean_requests_per_hour_median"] = _median(s.mean_count for s in chosen)
    summary["tenant_mape_by_weekday"] = _by_weekday([s for s in scores if s.level == "tenant"])
    return summary


def _by_weekday(scores: Sequence[ForecastScore]) -> dict[str, float]:
    """Mean fold MAPE per weekday of the forecast day (where defined), Monday first."""
    folds: dict[str, list[float]] = {}
    for score in scores:
        for day, value in zip(score.fold_weekdays, score.fold_mape, strict=True):
            folds.setdefault(day, []).append(value)
    order = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    return {day: _mean(folds[day]) for day in order if day in folds}
