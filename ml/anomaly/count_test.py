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
