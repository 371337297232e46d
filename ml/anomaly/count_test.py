"""Traffic that stops: a count test of observed requests against the forecast.

A detector that scores deviations from a route's recent level sees a route that falls silent as
"zero, like the quiet nights", and a quiet hour as "zero, as expected". The question is how
unlikely the observed count is under the forecast: with expected count ``lam`` for the hour,
requests arriving as a Poisson process give ``P(X <= observed) = poisson.cdf(observed, lam)``.
A route whose forecast is 50 requests and that serves none has probability ``exp(-50)``, far
below any threshold; a route expected to serve 2 that serves none has ``exp(-2) = 0.14``, no
evidence at all. So the test flags stops where traffic was expected and, by construction, never
a quiet hour: with ``alpha`` = 1e-6, zero requests is flagged only when the forecast exceeds
``-ln(alpha)`` = 13.8 requests.

Overdispersion (real request counts vary more than Poisson) is absorbed by testing against the
forecast's lower bound rather than its point: the count must be improbable even at the low end of
what the forecaster thought possible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import poisson

DEFAULT_ALPHA = 1e-6


@dataclass(frozen=True)
class CountTest:
    """Lower-tail Poisson probability of each hour's count and whether it is a stop."""

    probability: np.ndarray
    is_stop: np.ndarray


def traffic_stop_test(
    observed: np.ndarray, expected: np.ndarray, alpha: float = DEFAULT_ALPHA
) -> CountTest:
    """Flag hours whose count is improbably low under the expected count.

    Args:
        observed: request counts per hour (non-negative integers).
        expected: the forecast per hour; pass the forecast's lower bound to allow for
            overdispersion (see the module docstring).
        alpha: flag where ``P(X <= observed | expected) < alpha``.

    Raises:
        ValueError: shapes differ, negative or non-finite values, alpha outside (0, 1).
    """
    observed = np.asarray(observed, dtype=float)
    expected = np.asarray(expected, dtype=float)
    if observed.shape != expected.shape:
        raise ValueError(f"observed {observed.shape} and expected {expected.shape} differ")
    if not (np.isfinite(observed).all() and np.isfinite(expected).all()):
        raise ValueError("counts and forecasts must be finite")
    if (observed < 0).any() or (expected < 0).any():
        raise ValueError("counts and forecasts must be >= 0")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    probability = poisson.cdf(np.floor(observed), np.maximum(expected, 0.0))
    return CountTest(probability=probability, is_stop=probability < alpha)


#: Days of the same hour the seasonal expectation looks back over.
LOOKBACK_DAYS = 7
#: Fewer earlier days than this at an hour: no expectation, no test.
MIN_SEASONS = 3


def seasonal_floor(
    counts: pd.Series,
    season: int = 24,
    lookback: int = LOOKBACK_DAYS,
    min_seasons: int = MIN_SEASONS,
) -> pd.Series:
    """The expected count of each hour, from below: the lowest count of the same hour over the
    previous ``lookback`` seasons (NaN with fewer than ``min_seasons`` of them).

    The lowest rather than the mean: a window of seven days holds the weekend's dip, so a
    Saturday is never tested against a Tuesday, and the floor absorbs the overdispersion the
    module docstring speaks of. A stop lasting longer than a day drags the floor to zero after
    a day: the test reports when traffic stops, not for how long.

    Args:
        counts: requests per hour on a regular hourly grid (zeros included).
        season: points per season (24: the same hour of the day).
    """
    values = counts.astype(float)
    lagged = pd.concat([values.shift(season * k) for k in range(1, lookback + 1)], axis=1)
    enough = lagged.notna().sum(axis=1) >= min_seasons
    return lagged.min(axis=1, skipna=True).where(enough)


def stop_score(probability: np.ndarray, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """A 0-1 score on the detectors' scale: 0.5 exactly at ``alpha``, 1 at ``alpha**2`` or below
    (``-log p`` relative to ``-log alpha``)."""
    surprise = -np.log(np.clip(probability, 1e-300, 1.0)) / -np.log(alpha)
    return np.clip(0.5 * surprise, 0.0, 1.0)


def stopped_hours(
    counts: pd.Series, hours: int | None = None, season: int = 24, alpha: float = DEFAULT_ALPHA
) -> pd.DataFrame:
    """The count test on the newest ``hours`` of an hourly request count (all hours if None)
    against its ``seasonal_floor``; hours without an expectation are left out.

    Returns:
        Columns ``bucket_at``, ``observed``, ``expected``, ``probability``, ``score``,
        ``is_stop`` (one row per tested hour).
    """
    floor = seasonal_floor(counts, season)
    if hours is not None:
        floor = floor.iloc[-hours:] if hours > 0 else floor.iloc[:0]
    floor = floor.dropna()
    observed = counts.loc[floor.index].astype(float).fillna(0.0).to_numpy()
    test = traffic_stop_test(observed, floor.to_numpy(), alpha)
    return pd.DataFrame(
        {
            "bucket_at": floor.index,
            "observed": observed,
            "expected": floor.to_numpy(),
            "probability": test.probability,
            "score": stop_score(test.probability, alpha),
            "is_stop": test.is_stop,
        }
    )
