"""A forecaster that hands a series it cannot fit to a simpler one.

A new application has a few days of history; a weekly M4 series may hold 80 weeks where SARIMA
with a 52-week season wants 159; a yearly series has no season at all. :class:`Fallback` tries
its chain in order and returns the first forecast that fits, under its own name, with
``fitted_by`` saying which member stood in. Only "this model cannot fit this history" errors
(``ValueError``, which includes :class:`~ml.forecast.base.HistoryTooShort`, and a singular
linear-algebra fit) move down the chain; anything else is a bug and propagates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ml.forecast.base import Forecast, Forecaster

logger = logging.getLogger(__name__)

FALLBACK_ERRORS = (ValueError, np.linalg.LinAlgError)


@dataclass(frozen=True)
class Fallback:
    """The first member of ``chain`` that can forecast the series, reported as ``label``.

    Attributes:
        chain: forecasters from the preferred (most complex) to the last resort.
        label: the name reported in results (usually the preferred member's).
    """

    chain: tuple[Forecaster, ...]
    label: str

    def __post_init__(self) -> None:
        if not self.chain:
            raise ValueError("a fallback chain needs at least one forecaster")

    @property
    def name(self) -> str:
        return self.label

    def forecast(self, y: pd.Series, horizon: int) -> Forecast:
        failure: Exception | None = None
        for position, member in enumerate(self.chain):
            try:
                forecast = member.forecast(y, horizon)
            except FALLBACK_ERRORS as exc:
                logger.debug("%s cannot fit %d points: %s", member.name, len(y), exc)
                failure = exc
                continue
            fitted_by = forecast.fitted_by or (member.name if position else "")
            return replace(forecast, model=self.label, fitted_by=fitted_by)
        assert failure is not None
        raise failure
