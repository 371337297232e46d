"""The forecast result and the forecaster interface shared by every model.

A forecaster is a frozen dataclass of settings with one method, ``forecast(y, horizon)``: it fits
on ``y`` (a regular, gap-free series) and returns a :class:`Forecast` holding the point forecast
and a prediction interval for the next ``horizon`` steps. Fitting and predicting in one call keeps
forecasters stateless, so a backtest or an evaluation can run them on any number of series and
origins (and in worker processes) without hidden state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from scipy.stats import norm

Transform = Literal["auto", "log", "none"]


class HistoryTooShort(ValueError):
    """The history has fewer points than the model needs (a new application, a short series).

    A :class:`ml.forecast.Fallback` catches it and hands the series to a simpler model.
    """


# eq=False: array fields compare elementwise, so equality (and hashing) stays by identity.
@dataclass(frozen=True, eq=False)
class Forecast:
    """A point forecast with a central prediction interval over ``horizon`` steps.

    Attributes:
        model: name of the forecaster that produced it.
        index: the forecast timestamps (or integer steps when the history had no time index).
        point: the point forecast.
        lower: lower bound of the ``level`` prediction interval, ``<= point``.
        upper: upper bound of the ``level`` prediction interval, ``>= point``.
        level: nominal coverage of the interval (0.95 for a 95% interval).
        fitted_by: the model that actually produced it when a fallback stood in (a short or
            non-seasonal history); empty when ``model`` did.
    """

    model: str
    index: pd.Index
    point: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    level: float = 0.95
    fitted_by: str = ""

    def __post_init__(self) -> None:
        n = len(self.index)
        for name in ("point", "lower", "upper"):
            values = getattr(self, name)
            if values.shape != (n,):
                raise ValueError(f"{self.model}: {name} has shape {values.shape}, expected ({n},)")
            if not np.isfinite(values).all():
                raise ValueError(f"{self.model}: {name} forecast is not finite")
        if (self.lower > self.point).any() or (self.point > self.upper).any():
            raise ValueError(f"{self.model}: interval does not contain the point forecast")

    @property
    def horizon(self) -> int:
        return len(self.index)

    def to_frame(self) -> pd.DataFrame:
        """The forecast as a DataFrame: ``ds, yhat, yhat_lower, yhat_upper`` (Prophet's names)."""
        return pd.DataFrame(
            {
                "ds": self.index,
                "yhat": self.point,
                "yhat_lower": self.lower,
                "yhat_upper": self.upper,
            }
        )


@runtime_checkable
class Forecaster(Protocol):
    """Fits on a history and forecasts ``horizon`` steps ahead with a prediction interval."""

    @property
    def name(self) -> str: ...

    def forecast(self, y: pd.Series, horizon: int) -> Forecast: ...


def validate_history(y: pd.Series, horizon: int, min_length: int = 2) -> np.ndarray:
    """Check a history and a horizon; return the history's values as floats.

    Raises:
        HistoryTooShort: fewer than ``min_length`` points (a ``ValueError``).
        ValueError: horizon < 1, or a missing/infinite value.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    values = np.asarray(y, dtype=float)
    if values.ndim != 1:
        raise ValueError("the history must be one-dimensional")
    if values.size < min_length:
        raise HistoryTooShort(f"need at least {min_length} observations, got {values.size}")
    if not np.isfinite(values).all():
        raise ValueError("the history has missing or infinite values; fill gaps first")
    return values


def future_index(y: pd.Series, horizon: int) -> pd.Index:
    """The ``horizon`` index labels following ``y``'s index.

    A DatetimeIndex continues at its frequency (set or inferred); any other index is treated as
    positions and continues as integers.
    """
    index = y.index
    if isinstance(index, pd.DatetimeIndex):
        freq = index.freq or (pd.infer_freq(index) if len(index) >= 3 else None)
        if freq is None:
            raise ValueError("cannot infer the frequency of the history's DatetimeIndex")
        return pd.date_range(index[-1], periods=horizon + 1, freq=freq, name=index.name)[1:]
    start = len(index)
    return pd.RangeIndex(start, start + horizon)


def use_log(values: np.ndarray, transform: Transform) -> bool:
    """Whether to model ``log(y)``: always for ``log`` (values must be > 0), never for
    ``none``, and for ``auto`` when every value is strictly positive.
    """
    positive = bool((values > 0).all())
    if transform == "log" and not positive:
        raise ValueError("a log transform needs strictly positive values")
    return transform == "log" or (transform == "auto" and positive)


def z_value(level: float) -> float:
    """The standard-normal quantile of a central ``level`` interval (1.96 for 0.95)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return float(norm.ppf(0.5 + level / 2))


def build_forecast(
    model: str,
    index: pd.Index,
    point: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    level: float,
    fitted_by: str = "",
) -> Forecast:
    """A Forecast whose interval is widened, where needed, to contain the point forecast.

    Back-transformed or combined intervals can miss the point by rounding (or, after a log
    transform, by the mean/median gap); this makes ``lower <= point <= upper`` hold exactly.
    """
    point = np.asarray(point, dtype=float)
    return Forecast(
        model=model,
        index=index,
        point=point,
        lower=np.minimum(np.asarray(lower, dtype=float), point),
        upper=np.maximum(np.asarray(upper, dtype=float), point),
        level=level,
        fitted_by=fitted_by,
    )


def gaussian_interval(
    point: np.ndarray, std: np.ndarray, level: float
) -> tuple[np.ndarray, np.ndarray]:
    """``point -/+ z * std``: a central normal prediction interval."""
    z = z_value(level)
    return point - z * std, point + z * std


def residual_std(residuals: np.ndarray, n_params: int = 0) -> float:
    """Root mean square of in-sample residuals, with a degrees-of-freedom correction."""
    residuals = residuals[np.isfinite(residuals)]
    dof = residuals.size - n_params
    if dof < 1:
        raise ValueError("too few residuals to estimate the forecast error variance")
    return math.sqrt(float(np.sum(residuals**2)) / dof)
