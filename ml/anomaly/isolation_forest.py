"""Isolation Forest (scikit-learn) over a short lag embedding, refitted on a trailing history."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from sklearn.ensemble import IsolationForest

from ml.anomaly.base import OnlineDetector
from ml.anomaly.compiled_forest import CompiledForest
from ml.anomaly.seasonal import global_scale, rolling_baseline


class IsolationForestDetector(OnlineDetector):
    """Isolation Forest on the shape of the last ``lags`` points around the trailing median.

    Each point ``t`` becomes a feature row built from points ``<= t`` of the seasonally adjusted
    series: the last ``lags`` values relative to the median of the trailing ``window`` (the
    expected value, as in ``RobustBaseline``), the level relative to the training median and the
    last step, all in units of the training spread. A forest fitted only on rows before ``t``
    scores row ``t``: ``score`` walks the series in blocks of ``refit_every`` points and refits on
    the trailing ``max_history`` rows before each block. The calibration's reference raw scores
    are out of sample too: a forest fitted on the first half of the training rows scores the
    second half.

    Args:
        lags: points in the embedding.
        window: trailing window of the local median (the expected value).
        n_estimators: trees per forest.
        max_samples: rows per tree.
        refit_every: points scored between refits.
        max_history: rows a refit trains on (the most recent ones).
        random_state: seed of every forest.
        **options: see ``OnlineDetector``.
    """

    name = "isolation_forest"

    def __init__(
        self,
        lags: int = 8,
        *,
        window: int = 64,
        n_estimators: int = 100,
        max_samples: int = 256,
        refit_every: int = 500,
        max_history: int = 4000,
        random_state: int = 0,
        **options: object,
    ) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        if lags < 1 or window < 2 or refit_every < 1:
            raise ValueError("lags and refit_every must be positive, window at least 2")
        self.lags = lags
        self.window = window
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.refit_every = refit_every
        self.max_history = max_history
        self.random_state = random_state
        self._center = 0.0
        self._scale = 1.0
        # Kept flattened: scoring is vectorised, and the fitted forest is plain arrays (NPZ).
        self._forest: CompiledForest | None = None

    @property
    def history_points(self) -> int:
        return self.max_history

    def _features(self, residual: np.ndarray, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Feature rows and expected values of ``residual[start:]``."""
        base = rolling_baseline(residual, self.window, 0.01 * self._scale, start)
        padded = np.concatenate([np.full(self.lags - 1, residual[0]), residual])
        shape = sliding_window_view(padded, self.lags)[start:]
        rows = np.column_stack(
            [
                (shape - base.expected[:, None]) / self._scale,
                (residual[start:] - self._center) / self._scale,
                np.diff(residual, prepend=residual[0])[start:] / self._scale,
            ]
        )
        return rows, base.expected

    def _new_forest(self, rows: np.ndarray) -> CompiledForest:
        forest = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=min(self.max_samples, len(rows)),
            random_state=self.random_state,
        ).fit(rows)
        return CompiledForest.from_sklearn(forest)

    def _fit(self, residual: np.ndarray) -> np.ndarray:
        if len(residual) < 8:
            raise ValueError(f"{self.name}: need at least 8 training points, got {len(residual)}")
        self._center = float(np.median(residual))
        self._scale = global_scale(residual)
        rows, _ = self._features(residual)
        half = len(rows) // 2
        reference = -self._new_forest(rows[:half]).score_samples(rows[half:])
        self._forest = self._new_forest(rows[-self.max_history :])
        return reference

    def _score(self, residual: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
        assert self._forest is not None
        n = len(residual) - start
        # Rows before ``start`` only matter when a refit inside the scored stretch trains on them.
        first = max(0, start - self.max_history) if n > self.refit_every else start
        rows, expected = self._features(residual, first)
        raw = np.empty(n)
        forest = self._forest
        for block in range(0, n, self.refit_every):
            at = start + block - first
            if block > 0:
                forest = self._new_forest(rows[max(0, at - self.max_history) : at])
            stop = min(block + self.refit_every, n)
            raw[block:stop] = -forest.score_samples(rows[at : start - first + stop])
        return raw, expected[start - first :]
