"""Calibration: raw nonconformity scores to one [0, 1] score, the range rule, the cooldown.

A detector's raw nonconformity (a robust z-score, an isolation depth, a reconstruction error)
differs in scale by detector and by series. ``calibrate`` maps it to a score in [0, 1] the same way
for all of them: the probability ``p`` that a raw score at least this high occurs, estimated from
the raw scores of the points before it -- empirically in the body, and beyond the 95th percentile by
a generalised Pareto tail (peaks over threshold, as in SPOT, Siffer et al., KDD 2017), so a raw
score beyond anything seen still gets a finite, ordered probability. The score is ``-log10(p) /
10``: 0.5 means "one point in 100,000", 1 means ``p <= 1e-10``. Because ``p`` is a rate per point,
one threshold means the same on every series.

Two rules complete the score. A value outside the range seen so far, widened by 5% of that range,
scores 1 (NAB's Numenta HTM detector calls it a spatial anomaly). ``cooldown`` keeps one alert per
incident: a point keeps its score only if it beats every score of the ``cooldown`` points before
it.

Every helper here only looks backwards: the value at point ``t`` depends on points ``<= t``.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _gpd_pwm(excesses: np.ndarray) -> tuple[float, float]:
    """Shape and scale of a generalised Pareto fit by probability-weighted moments.

    Hosking and Wallis (1987): robust for small samples and closed-form, so the tail can be
    refitted often. Returns (0, mean) -- an exponential tail -- when the moments are degenerate.
    """
    x = np.sort(excesses)
    n = len(x)
    a0 = float(x.mean())
    a1 = float(np.mean((1.0 - (np.arange(1, n + 1) - 0.35) / n) * x))
    denominator = a0 - 2.0 * a1
    if a0 <= 0 or denominator <= 0:
        return 0.0, max(a0, 1e-12)
    return 2.0 - a0 / denominator, 2.0 * a0 * a1 / denominator


def exceedance_probability(
    raw: np.ndarray,
    history: np.ndarray,
    *,
    window: int = 2000,
    refit_every: int = 50,
    tail_quantile: float = 0.95,
    max_shape: float = 0.5,
    min_history: int = 50,
) -> np.ndarray:
    """Per-point probability of a raw score at least this high, from earlier raw scores only.

    Every ``refit_every`` points the reference is rebuilt from the last ``window`` raw scores
    before that point: below its ``tail_quantile`` the probability is the empirical one
    ``(count >= x + 1) / (n + 1)``; above, ``share above the quantile * Pareto survival`` of the
    excess, with the shape kept in ``[0, max_shape]``: never a bounded tail, and never so heavy
    that a few huge outliers in the reference make every later point look ordinary. With fewer
    than ``min_history`` earlier raw scores the probability is 1.
    """
    both = np.concatenate([history, raw])
    start = len(history)
    out = np.ones(len(raw))
    for block in range(0, len(raw), refit_every):
        at = start + block
        reference = np.sort(both[max(0, at - window) : at])
        n = len(reference)
        if n < min_history:
            continue
        chunk = both[at : at + min(refit_every, len(raw) - block)]
        p = (n - np.searchsorted(reference, chunk, side="left") + 1) / (n + 1)
        threshold = reference[int(np.floor(tail_quantile * (n - 1)))]
        excesses = reference[reference > threshold] - threshold
        above = chunk > threshold
        if len(excesses) >= 5 and above.any():
            shape, scale = _gpd_pwm(excesses)
            # A negative shape means a bounded tail: every value past the bound would get p = 0.
            # A few dozen excesses cannot show a bound, so the tail is at least exponential.
            shape = min(max(shape, 0.0), max_shape)
            y = chunk[above] - threshold
            if abs(shape) < 1e-6:
                survival = np.exp(-y / scale)
            else:
                base = 1.0 + shape * y / scale
                survival = np.where(base > 0, np.power(np.maximum(base, 1e-300), -1.0 / shape), 0.0)
            p[above] = len(excesses) / n * survival
        out[block : block + len(chunk)] = p
    return out


def calibrate(raw: np.ndarray, history: np.ndarray, *, window: int = 2000) -> np.ndarray:
    """Raw scores to [0, 1]: ``-log10(p) / 10`` of ``exceedance_probability`` (see the module)."""
    p = exceedance_probability(raw, history, window=window)
    return np.clip(-np.log10(np.maximum(p, 1e-10)) / 10.0, 0.0, 1.0)


def range_novelty(values: np.ndarray, low: float, high: float, tolerance: float) -> np.ndarray:
    """1 where a value leaves the range seen before it (widened by ``tolerance`` of it), else 0.

    ``low`` and ``high`` bound the history before ``values``; each value then widens the range
    for the next. A range of zero width (a flat history) flags nothing, as in NAB's HTM detector.
    """
    if len(values) == 0:
        return np.zeros(0)
    highs = np.maximum.accumulate(np.concatenate([[high], values]))[:-1]
    lows = np.minimum.accumulate(np.concatenate([[low], values]))[:-1]
    width = highs - lows
    margin = width * tolerance
    novel = (width > 0) & ((values > highs + margin) | (values < lows - margin))
    return novel.astype(float)


def cooldown(likelihood: np.ndarray, points: int) -> np.ndarray:
    """Keep a score only where it beats every score of the ``points`` points before it.

    One incident then raises one alert at its onset (and again only if it gets worse) whatever
    threshold is later applied, instead of a run of alerts while the evidence decays.
    """
    if points <= 0 or len(likelihood) == 0:
        return likelihood.copy()
    padded = np.concatenate([np.full(points, -1.0), likelihood[:-1]])
    before = sliding_window_view(padded, points).max(axis=1)
    return np.where(likelihood > before, likelihood, 0.0)
