"""The robust rolling baseline: median/MAD z-score against a trailing window. The floor to beat."""

from __future__ import annotations

import numpy as np

from ml.anomaly.base import OnlineDetector
from ml.anomaly.seasonal import global_scale, rolling_baseline


class RobustBaseline(OnlineDetector):
    """Expected value = median of the last ``window`` points; raw score = ``|x - median| / MAD``.

    Works on the seasonally adjusted series (see ``OnlineDetector``), so on a daily pattern the
    window holds residuals, not the pattern itself. Online by construction: point ``t`` is
    compared with points ``t - window .. t - 1`` only; the MAD is floored at 1% of the training
    spread so a flat stretch does not turn every wiggle into an infinite z-score.

    Args:
        window: points in the trailing window.
        **options: see ``OnlineDetector``.
    """

    name = "robust_baseline"

    def __init__(self, window: int = 64, **options: object) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        if window < 2:
            raise ValueError("window must be at least 2")
        self.window = window
        self._scale_floor = 1.0

    @property
    def history_points(self) -> int:
        return self.window

    def _fit(self, residual: np.ndarray) -> np.ndarray:
        self._scale_floor = 0.01 * global_scale(residual)
        # The first points have almost no past (a MAD of one or two points), so their huge
        # z-scores would only inflate the calibration's reference.
        warmed = min(self.window, len(residual) // 2)
        return self._score(residual, warmed)[0]

    def _score(self, residual: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
        base = rolling_baseline(residual, self.window, self._scale_floor, start)
        raw = np.abs(residual[start:] - base.expected) / base.scale
        return raw, base.expected
