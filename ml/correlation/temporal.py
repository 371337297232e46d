"""Temporal correlation: anomalies that co-occur within a window belong to one episode."""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Two anomalies whose hours are at most this far apart (chained) share an episode.
CO_OCCURRENCE_WINDOW = pd.Timedelta(hours=2)


def naive_ns(times: pd.Series) -> np.ndarray:
    """UTC times as a naive ``datetime64[ns]`` array (fast comparisons, no object dtype)."""
    return pd.to_datetime(pd.Series(times), utc=True).dt.tz_convert(None).to_numpy("datetime64[ns]")


def co_occurrence_labels(
    times: pd.Series, window: pd.Timedelta = CO_OCCURRENCE_WINDOW
) -> np.ndarray:
    """Episode label per row: rows sorted by time start a new episode after a gap > ``window``.

    Single linkage in time, so an episode of hourly anomalies lasts as long as they keep coming.
    Labels are numbered in time order; the input order is kept.
    """
    if len(times) == 0:
        return np.zeros(0, dtype=np.int64)
    values = naive_ns(times)
    order = np.argsort(values, kind="stable")
    gaps = np.diff(values[order]) > window.to_timedelta64()
    sorted_labels = np.concatenate([[0], np.cumsum(gaps)])
    labels = np.empty(len(values), dtype=np.int64)
    labels[order] = sorted_labels
    return labels
