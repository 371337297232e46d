"""Sampling frequencies beyond hourly: their pandas aliases, seasons and M4 conventions.

M4's own "Frequency" column is the period its benchmarks score with (MASE's seasonal naive):
1 for yearly, weekly and daily data. That is not the period a model should fit: a daily series of
LLM traffic repeats weekly, a weekly one may repeat yearly (52). :class:`Frequency` keeps both:
``score_season`` for the M4 scores (comparable with the published figures), ``model_season`` for
the forecasters, which test it on every series (M4's autocorrelation test) and fall back to a
non-seasonal model where the season is absent or the history too short.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Frequency:
    """One sampling frequency.

    Attributes:
        name: ``yearly``, ``quarterly``, ``monthly``, ``weekly``, ``daily`` or ``hourly``.
        pandas_freq: the offset alias of its regular timestamps.
        score_season: M4's seasonal period (MASE scale, Naive2's seasonal adjustment).
        model_season: the period the forecasters try (1: none).
        horizon: M4's forecast horizon for it.
    """

    name: str
    pandas_freq: str
    score_season: int
    model_season: int
    horizon: int


FREQUENCIES: dict[str, Frequency] = {
    frequency.name: frequency
    for frequency in (
        Frequency("yearly", "YS", 1, 1, 6),
        Frequency("quarterly", "QS", 4, 4, 8),
        Frequency("monthly", "MS", 12, 12, 18),
        Frequency("weekly", "W-MON", 1, 52, 13),
        Frequency("daily", "D", 1, 7, 14),
        Frequency("hourly", "h", 24, 24, 48),
    )
}


def frequency_named(name: str) -> Frequency:
    """The frequency called ``name`` (case-insensitive)."""
    try:
        return FREQUENCIES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown frequency {name!r}; choose from {sorted(FREQUENCIES)}") from None


def frequency_from_path(path: str | Path) -> Frequency | None:
    """The frequency an M4 file name starts with (``Weekly-train.csv`` -> weekly), if any."""
    match = re.match(r"([A-Za-z]+)", Path(path).name)
    return FREQUENCIES.get(match.group(1).lower()) if match else None
