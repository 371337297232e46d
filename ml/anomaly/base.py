"""What every detector shares: the result types, the online life cycle and the calibration.

A detector turns a series into a raw nonconformity per point (a robust z-score, an isolation
depth, a reconstruction error) whose scale differs by detector and by series. ``calibrate`` maps
it to a score in [0, 1] the same way for all of them: the probability ``p`` that a raw score at
least this high occurs, estimated from the raw scores of the points before it -- empirically in
the body, and beyond the 95th percentile by a generalised Pareto tail (peaks over threshold, as in
SPOT, Siffer et al., KDD 2017), so a raw score beyond anything seen still gets a finite, ordered
probability. The score is ``-log10(p) / 10``: 0.5 means "one point in 100,000", 1 means
``p <= 1e-10``. Because ``p`` is a rate per point, one threshold means the same on every series.

Two rules complete the score. A value outside the range seen so far, widened by 5% of that range,
scores 1 (NAB's Numenta HTM detector calls it a spatial anomaly). ``cooldown`` keeps one alert per
incident: a point keeps its score only if it beats every score of the ``cooldown`` points before
it.

Every helper here only looks backwards: the value at point ``t`` depends on points ``<= t``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import ClassVar, Protocol, Self, runtime_checkable

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

#: The calibrated score of an exceedance probability of 1e-5 per point: the default alert threshold.
DEFAULT_THRESHOLD = 0.5
_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class Anomaly:
    """One flagged point: where, how far from expected, and how sure."""

    series_id: str
    metric: str
    at: object
    value: float
    expected: float
    deviation: float
    score: float
    detector: str


@dataclass(frozen=True)
class DetectorResult:
    """A detector's verdict on every point of a series.

    Attributes:
        detector: the detector's name.
        series_id: which series (e.g. ``tenant/application/model``).
        metric: which metric of it (e.g. ``latency_ms_p95``).
        index: the series' index (timestamps).
        values: the observed values.
        scores: anomaly score in [0, 1] after the alert cooldown; ``is_anomaly`` thresholds it.
        likelihood: the calibrated score in [0, 1] (with the range rule) before the cooldown.
        is_anomaly: ``scores >= threshold``.
        expected: what the detector expected at each point.
        deviation: ``values - expected``, in the metric's unit.
        threshold: the decision threshold used.
        components: for an ensemble, each member's own result.
    """

    detector: str
    series_id: str
    metric: str
    index: pd.Index
    values: np.ndarray
    scores: np.ndarray
    likelihood: np.ndarray
    is_anomaly: np.ndarray
    expected: np.ndarray
    deviation: np.ndarray
    threshold: float
    components: Mapping[str, DetectorResult] = field(default_factory=dict, repr=False)

    def anomalies(self) -> list[Anomaly]:
        """The flagged points, oldest first."""
        return [
            Anomaly(
                series_id=self.series_id,
                metric=self.metric,
                at=self.index[i],
                value=float(self.values[i]),
                expected=float(self.expected[i]),
                deviation=float(self.deviation[i]),
                score=float(self.scores[i]),
                detector=self.detector,
            )
            for i in np.flatnonzero(self.is_anomaly)
        ]

    def tail(self, points: int) -> DetectorResult:
        """The result of the last ``points`` points only (members' results sliced alike)."""
        if points >= len(self.values):
            return self
        cut = slice(len(self.values) - points, None)
        return replace(
            self,
            index=self.index[cut],
            values=self.values[cut],
            scores=self.scores[cut],
            likelihood=self.likelihood[cut],
            is_anomaly=self.is_anomaly[cut],
            expected=self.expected[cut],
            deviation=self.deviation[cut],
            components={name: r.tail(points) for name, r in self.components.items()},
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per point: value, expected, deviation, likelihood, score, is_anomaly."""
        return pd.DataFrame(
            {
                "series_id": self.series_id,
                "metric": self.metric,
                "value": self.values,
                "expected": self.expected,
                "deviation": self.deviation,
                "likelihood": self.likelihood,
                "score": self.scores,
                "is_anomaly": self.is_anomaly,
            },
            index=self.index,
        )


@runtime_checkable
class Detector(Protocol):
    """``fit`` on history, then ``score`` the points that follow it, online."""

    name: str
    threshold: float

    def fit(self, train: pd.Series) -> Detector: ...

    def score(
        self, series: pd.Series, *, series_id: str = "", metric: str | None = None
    ) -> DetectorResult: ...


class NotFittedError(RuntimeError):
    """``score`` was called before ``fit``."""


def as_values(series: pd.Series, what: str) -> np.ndarray:
    """The float values of ``series``; raises on missing or infinite values."""
    values = np.asarray(series, dtype=float)
    if values.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional")
    if not np.isfinite(values).all():
        raise ValueError(f"{what} holds missing or infinite values; fill or drop them first")
    return values


def last_index(train: pd.Series) -> object | None:
    """The index label of the last training point (``None`` for an empty series)."""
    return train.index[-1] if len(train) else None


def check_continues(train_end: object | None, series: pd.Series) -> None:
    """``series`` must start after the training data ends: scoring training data would leak it.

    Indexes that cannot be compared (e.g. a fresh ``RangeIndex`` after timestamps) pass.
    """
    if train_end is None or len(series) == 0:
        return
    try:
        overlaps = bool(series.index[0] <= train_end)
    except TypeError:
        return
    if overlaps:
        raise ValueError(
            "score() takes the points after the training data; "
            f"series starts at {series.index[0]!r}, training ends at {train_end!r}"
        )


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


def build_result(
    *,
    detector: str,
    series: pd.Series,
    series_id: str,
    metric: str | None,
    likelihood: np.ndarray,
    expected: np.ndarray,
    threshold: float,
    cooldown_points: int,
    components: Mapping[str, DetectorResult] | None = None,
) -> DetectorResult:
    """Assemble a ``DetectorResult`` from calibrated scores and expected values."""
    values = np.asarray(series, dtype=float)
    scores = cooldown(likelihood, cooldown_points)
    return DetectorResult(
        detector=detector,
        series_id=series_id,
        metric=metric if metric is not None else str(series.name or "value"),
        index=series.index,
        values=values,
        scores=scores,
        likelihood=likelihood,
        is_anomaly=scores >= threshold,
        expected=expected,
        deviation=values - expected,
        threshold=threshold,
        components=dict(components or {}),
    )


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


@dataclass(frozen=True)
class _Fitted:
    train_end: object | None
    tail: np.ndarray
    season: Seasonality
    calibration: np.ndarray
    low: float
    high: float


class OnlineDetector(ABC):
    """The shared life cycle: seasonal adjustment, raw score, calibration, rules, result.

    ``fit`` learns the season from the training data and hands the seasonally adjusted training
    values (the residual) to ``_fit``, which returns reference raw scores for the calibration.
    ``score`` takes the points that follow the training data: it prepends the tail of the
    training data, adjusts, and asks ``_score`` for the raw score and expected residual of every
    new point -- each computed from that point and the points before it only -- then calibrates
    against the raw scores before each point, applies the range rule and the cooldown.

    Args:
        threshold: decision threshold on the calibrated score.
        cooldown: points after a score during which only a higher score counts again.
        seasonal: remove a seasonal component when the training data show a clear period.
        calibration_window: past raw scores the calibration compares with.
        range_tolerance: a value this share of the range beyond the range seen so far scores 1;
            ``None`` turns the rule off.
    """

    name: ClassVar[str]

    def __init__(
        self,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        cooldown: int = 64,
        seasonal: bool = True,
        calibration_window: int = 2000,
        range_tolerance: float | None = 0.05,
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.seasonal = seasonal
        self.calibration_window = calibration_window
        self.range_tolerance = range_tolerance
        self._fitted: _Fitted | None = None

    @property
    @abstractmethod
    def history_points(self) -> int:
        """Points of past residual ``_score`` needs before the first new point."""

    @abstractmethod
    def _fit(self, residual: np.ndarray) -> np.ndarray:
        """Learn from the training residual; return reference raw scores, oldest first."""

    @abstractmethod
    def _score(self, residual: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
        """(raw score, expected residual) of ``residual[start:]``, each from its past only."""

    def residual(self, train: pd.Series) -> np.ndarray:
        """The training values less their seasonal component (what ``_fit`` learns from)."""
        values = as_values(train, "train")
        return values - Seasonality.fit(values, enabled=self.seasonal).component(values)

    def fit(self, train: pd.Series) -> Self:
        """Learn the season and the model from the training data."""
        values = as_values(train, "train")
        season = Seasonality.fit(values, enabled=self.seasonal)
        residual = values - season.component(values)
        calibration = np.asarray(self._fit(residual), dtype=float)
        keep = self.history_points + season.history
        self._fitted = _Fitted(
            train_end=last_index(train),
            tail=values[-keep:] if keep else values[:0],
            season=season,
            calibration=calibration[-self.calibration_window :],
            low=float(values.min()),
            high=float(values.max()),
        )
        return self

    def raw_scores(self, series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """(raw scores, expected values) of ``series``, which continues the training data."""
        fitted = self._require()
        values = as_values(series, "series")
        both = np.concatenate([fitted.tail, values])
        seasonal = fitted.season.component(both)
        start = len(fitted.tail)
        raw, expected_residual = self._score(both - seasonal, start)
        return raw, expected_residual + seasonal[start:]

    def likelihood(self, series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """(calibrated scores with the range rule, before the cooldown; expected values)."""
        fitted = self._require()
        raw, expected = self.raw_scores(series)
        calibrated = calibrate(raw, fitted.calibration, window=self.calibration_window)
        return np.maximum(calibrated, self.novelty(series)), expected

    def novelty(self, series: pd.Series) -> np.ndarray:
        """1 where ``series`` leaves the range seen so far (``range_novelty``), else 0."""
        fitted = self._require()
        values = as_values(series, "series")
        if self.range_tolerance is None:
            return np.zeros(len(values))
        return range_novelty(values, fitted.low, fitted.high, self.range_tolerance)

    def score(
        self, series: pd.Series, *, series_id: str = "", metric: str | None = None
    ) -> DetectorResult:
        """Score the points that follow the training data, each from its past only.

        Args:
            series: the new points, indexed after the training data.
            series_id: which series this is, carried into every ``Anomaly``.
            metric: which metric (default: ``series.name``).
        """
        check_continues(self._require().train_end, series)
        likelihood, expected = self.likelihood(series)
        return build_result(
            detector=self.name,
            series=series,
            series_id=series_id,
            metric=metric,
            likelihood=likelihood,
            expected=expected,
            threshold=self.threshold,
            cooldown_points=self.cooldown,
        )

    @property
    def period(self) -> int | None:
        """The seasonal period found in the training data (``None``: none, or not fitted)."""
        return self._fitted.season.period if self._fitted else None

    def _require(self) -> _Fitted:
        if self._fitted is None:
            raise NotFittedError(f"{self.name}: call fit() before score()")
        return self._fitted
