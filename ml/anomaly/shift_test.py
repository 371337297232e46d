"""Subtle sustained shifts in a route's per-request metrics: a volume-weighted CUSUM.

The detectors score each hour against the hours before it, one metric at a time: a latency p95
x1.3, a cost per request +30% or an error rate of 3% on one route moves its hourly values by
about the hour-to-hour noise, and hourly cost totals move with traffic far more than with price.
Two things make those shifts visible:

* Per-request quantities, weighted by volume. Latency p95, error rate and cost per request (the
  route's cost over its request count, read across two of its metrics) do not follow the traffic
  cycle, and their noise in an hour shrinks as ``1 / sqrt(requests)``. ``z_t = (x_t - m_t) *
  sqrt(n_t) / sigma`` then has the same spread in a busy and a quiet hour, with ``m_t`` the
  median of the route's last ``window`` judged hours ending ``gap`` hours before ``t`` (lagging,
  so a drift shows) and ``sigma`` the robust spread of ``(x - m) * sqrt(n)`` on the history.
* Accumulation. Page's two-sided CUSUM, ``S_t = max(0, S_{t-1} + z_t - k)`` (and the mirror for
  a fall), adds the evidence of consecutive hours; ``z`` is clipped at ``c`` so one outlier never
  makes a shift. An alarm when ``S >= h`` restarts the sum, so a shift that persists alarms
  again only after as much new evidence.

``k`` = 1 tunes the test to shifts of about two sigmas; ``h`` = 8 keeps the in-control run
length of Gaussian noise (two-sided) in the tens of thousands of hours. Hours with fewer than
``min_requests`` requests are not judged and leave the sums as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Robust sigma of a Gaussian from its MAD.
_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class ShiftTest:
    """Per point: the CUSUM statistic, the 0-1 score (0.5 at the alarm level), the reference
    level and whether an alarm was raised."""

    statistic: np.ndarray
    score: np.ndarray
    expected: np.ndarray
    is_shift: np.ndarray


def volume_cusum(
    values: np.ndarray,
    requests: np.ndarray,
    start: int,
    *,
    window: int = 72,
    gap: int = 12,
    allowance: float = 1.0,
    clip: float = 4.0,
    alarm: float = 8.0,
    min_requests: int = 20,
    proportion: bool = False,
) -> ShiftTest:
    """The CUSUM of ``values[start:]`` (per-request quantities) with ``values[:start]`` as
    history: the spread is learned there and the sums run through it.

    Args:
        values: hourly per-request metric (NaN where unmeasured).
        requests: the route's requests in the same hours.
        start: first point reported.
        proportion: ``values`` are proportions (error rates): the per-request spread is the
            binomial ``sqrt(p (1 - p))`` of the reference ``p`` (floored at 0.5%) and ``p`` is the
            pooled rate of the reference hours, since the hours of a low rate are mostly zeros
            and their median and robust spread are none.

    Returns:
        A ``ShiftTest`` of the points from ``start`` on.
    """
    x = np.asarray(values, dtype=float)
    n = np.asarray(requests, dtype=float)
    if x.shape != n.shape:
        raise ValueError("values and requests differ in shape")
    judged = np.isfinite(x) & (n >= min_requests)
    points = np.flatnonzero(judged)
    expected = np.full(len(x), np.nan)
    # The reference of each hour: the median of the last `window` judged hours before t - gap.
    for t in points:
        usable = np.searchsorted(points, t - gap, side="left")
        if usable >= 3:
            past = points[max(0, usable - window) : usable]
            # A low rate's hours are mostly zeros, so its median is 0: pool the proportion.
            expected[t] = (
                np.sum(x[past] * n[past]) / np.sum(n[past]) if proportion else np.median(x[past])
            )
    weighted = (x - expected) * np.sqrt(np.where(judged, n, 0.0))
    if proportion:
        rate = np.clip(expected, 0.005, 0.995)
        weighted = weighted / np.sqrt(rate * (1.0 - rate))
    history = weighted[:start][np.isfinite(weighted[:start])]
    if proportion:
        sigma = 1.0 if len(history) >= 10 else np.inf
    elif len(history) >= 10:
        centre = np.median(history)
        sigma = _MAD_TO_SIGMA * float(np.median(np.abs(history - centre)))
        sigma = max(sigma, 0.5 * float(np.std(history)), 1e-12)
    else:
        sigma = np.inf
    z = np.clip(np.nan_to_num(weighted / sigma, nan=0.0), -clip, clip)
    active = np.isfinite(weighted)
    upper = lower = 0.0
    statistic = np.zeros(len(x))
    alarms = np.zeros(len(x), dtype=bool)
    for t in range(len(x)):
        if not active[t]:
            statistic[t] = max(upper, lower)
            continue
        upper = max(0.0, upper + z[t] - allowance)
        lower = max(0.0, lower - z[t] - allowance)
        statistic[t] = max(upper, lower)
        if statistic[t] >= alarm:
            alarms[t] = t >= start
            upper = lower = 0.0
    score = np.clip(0.5 * statistic / alarm, 0.0, 1.0)
    score[alarms] = np.maximum(score[alarms], 0.5)
    return ShiftTest(
        statistic=statistic[start:],
        score=score[start:],
        expected=expected[start:],
        is_shift=alarms[start:],
    )


#: Route metric -> (how the shift test reads it, minimum requests for an hour to be judged).
#: Cost is tested per request (its total follows the traffic); rates keep the detector's volume
#: rule, cost per request is volume-weighted and judged from 5 requests.
SHIFT_METRICS: dict[str, tuple[str, int]] = {
    "latency_p95_ms": ("value", 20),
    "error_rate": ("proportion", 20),
    "cost_usd": ("per_request", 5),
}


def route_shifts(metric: str, values: np.ndarray, requests: np.ndarray, start: int) -> ShiftTest:
    """``volume_cusum`` of one route metric of ``SHIFT_METRICS`` (raw values, NaN where idle;
    the route's request counts), reported from ``start``."""
    mode, min_requests = SHIFT_METRICS[metric]
    x = np.asarray(values, dtype=float)
    n = np.nan_to_num(np.asarray(requests, dtype=float), nan=0.0)
    if mode == "per_request":
        x = np.where(n > 0, x / np.maximum(n, 1.0), np.nan)
    return volume_cusum(x, n, start, min_requests=min_requests, proportion=mode == "proportion")
