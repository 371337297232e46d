"""Seasonality and the rolling baseline: the dominant period, the seasonal median of past
cycles, a robust global scale and the rolling median/MAD baseline (backward-looking only)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

_MAD_TO_SIGMA = 1.4826


def global_scale(values: np.ndarray) -> float:
    """A robust spread of the training values (IQR, then std), never zero."""
    if len(values) == 0:
        return 1.0
    q75, q25 = np.percentile(values, [75, 25])
    spread = (q75 - q25) / 1.349
    if spread <= 0:
        spread = float(np.std(values))
    if spread <= 0:
        spread = max(abs(float(np.median(values))) * 1e-3, 1e-9)
    return float(spread)


def dominant_period(
    values: np.ndarray, *, min_period: int = 4, min_cycles: float = 2.0, min_acf: float = 0.3
) -> int | None:
    """The strongest seasonal period of ``values`` (in points), or ``None`` when there is none.

    The period is the lag of the highest autocorrelation peak after the autocorrelation first
    drops below zero, provided the data hold ``min_cycles`` full periods and the peak reaches
    ``min_acf``. Meant for the training data only, so the period is known before scoring.
    """
    n = len(values)
    max_period = int(n / min_cycles)
    if max_period <= min_period:
        return None
    x = values - values.mean()
    if not np.any(x):
        return None
    size = 1 << (2 * n - 1).bit_length()
    spectrum = np.fft.rfft(x, size)
    acf = np.fft.irfft(spectrum * np.conj(spectrum), size)[:n]
    # Unbiased: each lag divides by its own number of pairs, so long lags are not shrunk.
    acf = acf / acf[0] * n / (n - np.arange(n))
    below = np.flatnonzero(acf[1 : max_period + 1] < 0)
    if len(below) == 0:
        return None
    start = max(int(below[0]) + 1, min_period)
    if start >= max_period:
        return None
    segment = acf[start : max_period + 1]
    best = float(segment.max())
    if best < min_acf:
        return None
    # The top of the first peak that nearly reaches the best one: multiples of a period peak
    # about as high as the period itself.
    high = segment >= 0.9 * best
    first = int(np.argmax(high))
    below_again = np.flatnonzero(~high[first:])
    last = first + (int(below_again[0]) if len(below_again) else len(high) - first)
    return start + first + int(np.argmax(segment[first:last]))


def seasonal_expected(values: np.ndarray, period: int, cycles: int = 3) -> np.ndarray:
    """Median of the values one, two, ... ``cycles`` periods earlier (NaN before one period)."""
    n = len(values)
    lagged = np.full((cycles, n), np.nan)
    for k in range(1, cycles + 1):
        shift = k * period
        if shift < n:
            lagged[k - 1, shift:] = values[: n - shift]
    # A NaN-aware median over the few lags, vectorised (np.nanmedian loops in Python per call
    # and is most of the scoring time on short stretches): NaNs sort last, so the median of the
    # ``count`` present values sits at ``count // 2`` (and the one before it when even).
    ordered = np.sort(lagged, axis=0)
    count = (~np.isnan(lagged)).sum(axis=0)
    upper = np.take_along_axis(ordered, np.maximum(count // 2, 0)[None, :], axis=0)[0]
    lower = np.take_along_axis(ordered, np.maximum((count - 1) // 2, 0)[None, :], axis=0)[0]
    return np.where(count > 0, (upper + lower) / 2.0, np.nan)


@dataclass(frozen=True)
class RollingBaseline:
    """Median and robust scale of the ``window`` points strictly before each point."""

    expected: np.ndarray
    scale: np.ndarray


def rolling_baseline(
    values: np.ndarray, window: int, scale_floor: float, start: int = 0
) -> RollingBaseline:
    """Causal rolling median and MAD-based scale of ``values[start:]`` (past points only;
    expanding at the start of ``values``).

    Point ``t`` gets the median of ``values[t - window : t]``; the first point, with no past,
    expects itself. The scale is ``1.4826 * MAD``, floored at ``scale_floor`` so flat stretches
    do not turn every wiggle into an infinite z-score. ``start`` skips the points nobody reads:
    scoring a few new hours after a long history costs a few medians, not one per point.
    """
    n = len(values)
    start = min(max(start, 0), n)
    expected = np.empty(n - start)
    scale = np.empty(n - start)
    if n == start:
        return RollingBaseline(expected, scale)
    if start == 0:
        expected[0] = values[0]
        scale[0] = scale_floor
    for t in range(max(start, 1), min(window, n)):
        past = values[:t]
        med = np.median(past)
        expected[t - start] = med
        scale[t - start] = _MAD_TO_SIGMA * np.median(np.abs(past - med))
    first = max(window, start)
    if n > first:
        past = sliding_window_view(values[first - window : -1], window)
        med = np.median(past, axis=1)
        expected[first - start :] = med
        scale[first - start :] = _MAD_TO_SIGMA * np.median(np.abs(past - med[:, None]), axis=1)
    return RollingBaseline(expected=expected, scale=np.maximum(scale, scale_floor))


@dataclass(frozen=True)
class Seasonality:
    """The seasonal component of a series: the median of the same phase in past cycles.

    ``period`` comes from the training data (``dominant_period``); ``None`` means no clear
    season, and the component is then the training median (a constant).
    """

    period: int | None
    level: float
    cycles: int = 3

    @classmethod
    def fit(cls, train: np.ndarray, *, enabled: bool = True, cycles: int = 3) -> Seasonality:
        period = dominant_period(train) if enabled else None
        return cls(
            period=period, level=float(np.median(train)) if len(train) else 0.0, cycles=cycles
        )

    def component(self, values: np.ndarray) -> np.ndarray:
        """The seasonal component of each point, from earlier points only."""
        if self.period is None:
            return np.full(len(values), self.level)
        seasonal = seasonal_expected(values, self.period, self.cycles)
        return np.where(np.isnan(seasonal), self.level, seasonal)

    @property
    def history(self) -> int:
        """Points of history the component of the next point looks back at."""
        return (self.period or 0) * self.cycles
