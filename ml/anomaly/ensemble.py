"""The published detector: score fusion of the robust baseline, Isolation Forest and LSTM AE."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Literal

import numpy as np
import pandas as pd

from ml.anomaly.base import (
    DEFAULT_THRESHOLD,
    Detector,
    DetectorResult,
    NotFittedError,
    as_values,
    build_result,
    check_continues,
    last_index,
)
from ml.anomaly.baseline import RobustBaseline
from ml.anomaly.calibration import cooldown, range_novelty
from ml.anomaly.isolation_forest import IsolationForestDetector
from ml.anomaly.lstm_autoencoder import LstmAutoencoderDetector

Fusion = Literal["mean", "max", "median"]

_FUSE: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "mean": lambda stacked: stacked.mean(axis=0),
    "max": lambda stacked: stacked.max(axis=0),
    "median": lambda stacked: np.median(stacked, axis=0),
}


def default_members() -> list[Detector]:
    """A fresh robust baseline, Isolation Forest and LSTM autoencoder with their defaults."""
    return [RobustBaseline(), IsolationForestDetector(), LstmAutoencoderDetector()]


class EnsembleDetector:
    """Fuses the members' calibrated scores point by point, then applies its own cooldown.

    The members' scores share one scale (``-log10`` of a per-point exceedance probability, see
    ``ml.anomaly.base``), so fusing them is meaningful: ``mean`` is a soft vote -- the mean of
    ``-log10 p`` ranks points as Fisher's method of combining p-values does, so one member's
    certainty counts but agreement counts more; ``max`` alerts on any member, ``median`` on the
    middle one. A value outside the range seen so far (``range_tolerance``) scores 1 as in the
    members. The expected value is the median of the members' expected values. Each member's
    own result is kept in ``components``.

    Args:
        members: the detectors to fuse (default: ``default_members()``).
        fusion: how to fuse.
        threshold: decision threshold on the fused score.
        cooldown: points after a score during which only a higher score counts again.
        range_tolerance: see ``OnlineDetector``; ``None`` turns the rule off.
    """

    name = "ensemble"
    #: Alarm only where the range rule fires (the fused score is still computed and published):
    #: set per series by ``ml.anomaly.fleet.Fleet`` where the shift tests cover the metric's
    #: sustained changes. A class default, so states stored before it read back without.
    range_only: bool = False

    def __init__(
        self,
        members: Sequence[Detector] | None = None,
        *,
        fusion: Fusion = "mean",
        threshold: float = DEFAULT_THRESHOLD,
        cooldown: int = 64,
        range_tolerance: float | None = 0.05,
    ) -> None:
        self.members = list(members) if members is not None else default_members()
        if not self.members:
            raise ValueError("an ensemble needs at least one member")
        names = [m.name for m in self.members]
        if len(set(names)) != len(names):
            raise ValueError(f"member names must be unique, got {names}")
        if fusion not in _FUSE:
            raise ValueError(f"fusion must be one of {sorted(_FUSE)}")
        self.fusion = fusion
        self.threshold = threshold
        self.cooldown = cooldown
        self.range_tolerance = range_tolerance
        self._fitted = False
        self._train_end: object | None = None
        self._range = (0.0, 0.0)

    def fit(self, train: pd.Series) -> EnsembleDetector:
        """Fit every member on ``train``."""
        values = as_values(train, "train")
        for member in self.members:
            member.fit(train)
        self._fitted = True
        self._train_end = last_index(train)
        self._range = (float(values.min()), float(values.max())) if len(values) else (0.0, 0.0)
        return self

    def score(
        self, series: pd.Series, *, series_id: str = "", metric: str | None = None
    ) -> DetectorResult:
        """Score the points that follow the training data with every member and fuse them.

        Args:
            series: the new points, indexed after the training data.
            series_id: which series this is, carried into every ``Anomaly``.
            metric: which metric (default: ``series.name``).
        """
        if not self._fitted:
            raise NotFittedError(f"{self.name}: call fit() before score()")
        check_continues(self._train_end, series)
        results = {
            m.name: m.score(series, series_id=series_id, metric=metric) for m in self.members
        }
        fused = _FUSE[self.fusion](np.vstack([r.likelihood for r in results.values()]))
        novel = np.zeros(len(fused))
        if self.range_tolerance is not None:
            novel = range_novelty(as_values(series, "series"), *self._range, self.range_tolerance)
            fused = np.maximum(fused, novel)
        expected = np.median(np.vstack([r.expected for r in results.values()]), axis=0)
        result = build_result(
            detector=self.name,
            series=series,
            series_id=series_id,
            metric=metric,
            likelihood=fused,
            expected=expected,
            threshold=self.threshold,
            cooldown_points=self.cooldown,
            components=results,
        )
        if self.range_only:
            # The range rule's own cooldown: an unflagged calibrated score must not mute it.
            result = replace(result, is_anomaly=cooldown(novel, self.cooldown) >= self.threshold)
        return result
