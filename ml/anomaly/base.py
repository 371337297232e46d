"""What every detector shares: the result types and the online life cycle.

A detector turns a series into a raw nonconformity per point (a robust z-score, an isolation
depth, a reconstruction error) whose scale differs by detector and by series;
``ml.anomaly.calibration`` maps it to a score in [0, 1] the same way for all of them, and
``ml.anomaly.seasonal`` removes the seasonal component and gives the rolling baseline.

Every helper here only looks backwards: the value at point ``t`` depends on points ``<= t``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import ClassVar, Protocol, Self, runtime_checkable

import numpy as np
import pandas as pd

from ml.anomaly.calibration import calibrate, cooldown, range_novelty

# Imported from here by the detectors of the `artifacts` branch (isolation_forest.py,
# lstm_autoencoder.py, assets/ml_models/detector.py); import them from ml.anomaly.seasonal.
# Imported from here by the detectors the `artifacts` branch reworks (isolation_forest.py,
# lstm_autoencoder.py, assets/ml_models/detector.py); new code imports ml.anomaly.seasonal.
from ml.anomaly.seasonal import Seasonality, global_scale, rolling_baseline  # noqa: F401

#: The calibrated score of an exceedance probability of 1e-5 per point: the default alert threshold.
DEFAULT_THRESHOLD = 0.5


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
