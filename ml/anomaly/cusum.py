"""A two-sided CUSUM on the seasonal residual: sustained shifts and drifts, not spikes.

The robust baseline compares each hour with the median of the hours just before it, so a level
that moves by 30% and stays there, or creeps up over a day, is absorbed into its own reference
within hours: a latency x1.3 on one route, a cost level shift after a model-version change, a
drift, all score as ordinary noise hour by hour. Page's cumulative sum accumulates the small
evidence of each hour instead:

    z_t = clip((r_t - m_t) / s, -c, c)
    S+_t = max(0, S+_{t-1} + z_t - k),   S-_t = max(0, S-_{t-1} - z_t - k)

with ``r`` the seasonally adjusted value, ``m_t`` the median of the ``window`` residuals before
``t - gap`` (a reference that lags the change, so the change shows), ``s`` the training
residual's spread, ``k`` the allowance (half the shift, in sigmas, the test is tuned to) and
``c`` a clip that keeps one spike from looking like a shift (spikes are the baseline's job). The
raw score is ``max(S+, S-)``; the shared calibration (``ml.anomaly.calibration``) turns it into
a per-point exceedance probability against the CUSUM's own values on clean training data, so
the threshold means the same false-alarm rate as for the other members.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ml.anomaly.base import OnlineDetector
from ml.anomaly.seasonal import global_scale


class CusumDetector(OnlineDetector):
    """Two-sided CUSUM of clipped robust z-scores against a lagged rolling median.

    Args:
        window: residuals in the rolling reference median.
        gap: hours between the newest residual in the reference and the scored one: a shift
            younger than ``gap`` is compared with the level before it.
        allowance: ``k``, in sigmas (0.5: tuned to a one-sigma shift).
        clip: ``c``, the largest contribution of one hour, in sigmas.
        warmup: residuals the sums run over before the first scored point.
        **options: see ``OnlineDetector``.
    """

    name = "cusum"

    def __init__(
        self,
        window: int = 48,
        gap: int = 12,
        allowance: float = 0.5,
        clip: float = 3.0,
        warmup: int = 48,
        **options: object,
    ) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        if window < 2 or gap < 0 or warmup < 0:
            raise ValueError("window must be >= 2, gap and warmup >= 0")
        self.window = window
        self.gap = gap
        self.allowance = allowance
        self.clip = clip
        self.warmup = warmup
        self._scale = 1.0

    @property
    def history_points(self) -> int:
        return self.window + self.gap + self.warmup

    def _fit(self, residual: np.ndarray) -> np.ndarray:
        # The spread of hour-to-hour noise around the level: the robust spread, or for sparse
        # series (error rates of mostly zeros, whose IQR is 0) a trimmed standard deviation.
        low, high = np.percentile(residual, [1, 99]) if len(residual) else (0.0, 0.0)
        trimmed = np.clip(residual, low, high)
        self._scale = max(global_scale(residual), float(np.std(trimmed)), 1e-9)
        warmed = min(self.window + self.gap, len(residual) // 2)
        return self._score(residual, warmed)[0]

    def _score(self, residual: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
        n = len(residual)
        lag = self.window + self.gap
        reference = np.empty(n)
        reference[:] = residual[0] if n else 0.0
        for t in range(1, min(lag, n)):
            reference[t] = np.median(residual[: max(1, t - self.gap)])
        if n > lag:
            past = sliding_window_view(residual[: n - 1 - self.gap], self.window)
            reference[lag:] = np.median(past[: n - lag], axis=1)
        z = np.clip((residual - reference) / self._scale, -self.clip, self.clip)
        # The sums start ``warmup`` points before ``start`` (from zero): the state at ``start``
        # then depends on that stretch only, in training and in scoring alike.
        begin = max(0, start - self.warmup)
        upper = lower = 0.0
        raw = np.zeros(n - start)
        for t in range(begin, n):
            upper = max(0.0, upper + z[t] - self.allowance)
            lower = max(0.0, lower - z[t] - self.allowance)
            if t >= start:
                raw[t - start] = max(upper, lower)
        return raw, reference[start:]
