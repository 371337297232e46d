"""Point and interval forecast accuracy metrics, as defined for the M4 competition.

Every function scores ONE series (arrays of equal length: the actuals and the forecast over the
horizon); averaging over series is the caller's business (M4 takes the plain mean of the
per-series figures). A metric that is undefined for the inputs (MAPE with a zero actual, MASE or
MSIS on an in-sample series without seasonal variation) is ``nan``, never a made-up number, so a
mean over series containing it is ``nan`` too and the gap is visible.

References: Makridakis, Spiliotis & Assimakopoulos (2020), "The M4 Competition: 100,000 time
series and 61 forecasting methods", IJF 36(1); the competition's R evaluation code
(github.com/Mcompetitions/M4-methods).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

ArrayLike = npt.ArrayLike | Sequence[float]


def _pair(actual: ArrayLike, forecast: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(actual, dtype=float)
    f = np.asarray(forecast, dtype=float)
    if y.shape != f.shape or y.ndim != 1:
        raise ValueError(f"actual {y.shape} and forecast {f.shape} must be 1-d of equal length")
    if y.size == 0:
        raise ValueError("cannot score an empty horizon")
    if not (np.isfinite(y).all() and np.isfinite(f).all()):
        raise ValueError("actuals and forecasts must be finite")
    return y, f


def smape(actual: ArrayLike, forecast: ArrayLike) -> float:
    """Symmetric MAPE in percent: mean of ``200 |y - f| / (|y| + |f|)`` over the horizon.

    A step where both the actual and the forecast are 0 is a perfect forecast and scores 0
    (the M4 formula is 0/0 there; M4 data has no zeros).
    """
    y, f = _pair(actual, forecast)
    denominator = np.abs(y) + np.abs(f)
    terms = np.divide(
        200.0 * np.abs(y - f), denominator, out=np.zeros_like(y), where=denominator > 0
    )
    return float(terms.mean())


def mape(actual: ArrayLike, forecast: ArrayLike) -> float:
    """Mean absolute percentage error in percent; ``nan`` when any actual is 0 (undefined)."""
    y, f = _pair(actual, forecast)
    if (y == 0).any():
        return math.nan
    return float((100.0 * np.abs(y - f) / np.abs(y)).mean())


def mase_scale(insample: ArrayLike, season: int) -> float:
    """In-sample mean absolute error of the seasonal naive forecast ``y[t - season]``.

    The MASE (and MSIS) denominator. ``season=1`` gives the naive (random walk) scale.

    Raises:
        ValueError: the in-sample series is not longer than ``season``.
    """
    if season < 1:
        raise ValueError(f"season must be >= 1, got {season}")
    x = np.asarray(insample, dtype=float)
    if x.ndim != 1 or x.size <= season:
        raise ValueError(f"need more than season={season} in-sample points, got {x.size}")
    if not np.isfinite(x).all():
        raise ValueError("in-sample values must be finite")
    return float(np.abs(x[season:] - x[:-season]).mean())


def mase(actual: ArrayLike, forecast: ArrayLike, insample: ArrayLike, season: int) -> float:
    """Mean absolute scaled error: the forecast MAE over the in-sample seasonal-naive MAE.

    ``nan`` when the in-sample seasonal-naive MAE is 0 (a series repeating itself exactly).
    """
    y, f = _pair(actual, forecast)
    scale = mase_scale(insample, season)
    if scale == 0:
        return math.nan
    return float(np.abs(y - f).mean() / scale)


def msis(
    actual: ArrayLike,
    lower: ArrayLike,
    upper: ArrayLike,
    insample: ArrayLike,
    season: int,
    level: float = 0.95,
) -> float:
    """Mean scaled interval score (the M4 interval measure) of a ``level`` prediction interval.

    Interval width plus ``2 / alpha`` times the distance by which an actual falls outside, scaled
    like MASE; ``alpha = 1 - level``. ``nan`` when the scale is 0.
    """
    y, lo = _pair(actual, lower)
    _, hi = _pair(actual, upper)
    alpha = 1.0 - level
    if not 0 < alpha < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    scale = mase_scale(insample, season)
    if scale == 0:
        return math.nan
    penalty = (2.0 / alpha) * (np.clip(lo - y, 0, None) + np.clip(y - hi, 0, None))
    return float((hi - lo + penalty).mean() / scale)


def coverage(actual: ArrayLike, lower: ArrayLike, upper: ArrayLike) -> float:
    """Share of actuals inside their closed prediction interval ``[lower, upper]``."""
    y, lo = _pair(actual, lower)
    _, hi = _pair(actual, upper)
    return float(((y >= lo) & (y <= hi)).mean())


def owa(smape_value: float, mase_value: float, smape_naive2: float, mase_naive2: float) -> float:
    """Overall weighted average: mean of sMAPE and MASE, each relative to Naive2's.

    M4 applies it to the averages over a set of series, not to single series.
    """
    if smape_naive2 <= 0 or mase_naive2 <= 0:
        raise ValueError("Naive2 reference figures must be positive")
    return 0.5 * (smape_value / smape_naive2 + mase_value / mase_naive2)


@dataclass(frozen=True)
class PointScores:
    """Point-forecast accuracy of one forecast (one series, one origin)."""

    smape: float
    mase: float
    mape: float


def point_scores(
    actual: ArrayLike, forecast: ArrayLike, insample: ArrayLike, season: int
) -> PointScores:
    """sMAPE, MASE and MAPE of one forecast against its actuals."""
    return PointScores(
        smape=smape(actual, forecast),
        mase=mase(actual, forecast, insample, season),
        mape=mape(actual, forecast),
    )
