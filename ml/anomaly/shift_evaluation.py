"""Subtle shifts injected into the held-out week: the detector gate's second evaluation.

The spike evaluation (``ml.anomaly.training``) asks whether a candidate ranks single hours of
3-6 robust sigmas above clean hours. A slower model version (latency x1.4 for six hours), a
price change (cost per request x1.3) or an error rate three points up on one route moves each
of its hours by about their noise, and is invisible there. Here every route gets one such
shift per metric, in the held-out week at a seeded position where the route has traffic; a
candidate detects it when it flags that series within the shift or the ``GRACE_HOURS`` after.
Its false alarms are its flags on the same series in the clean held-out week, per 1,000
series-hours. A candidate whose spec has ``shift_tests`` adds the alarms of
``ml.anomaly.shift_test`` (latency without its time to first token: the detector's series do
not carry it), on the same history the scoring asset gives them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml.anomaly.fleet import Fleet, SeriesId
from ml.anomaly.shift_test import route_shifts
from ml.promotion import weighted_mean_replicates

#: Metric -> the injected shift: a factor, or for the error rate the points added.
SUBTLE_SHIFTS: dict[str, float] = {"latency_p95_ms": 1.4, "cost_usd": 1.3, "error_rate": 0.03}
SHIFT_HOURS = 6
GRACE_HOURS = 2
#: A shift is placed where the route serves at least this many requests over its hours (a shift
#: of a route without traffic is no incident).
MIN_SPAN_REQUESTS = 120


@dataclass(frozen=True)
class ShiftCase:
    """One injected shift: the held-out values with it, and where it starts."""

    key: SeriesId
    start: int
    shifted: pd.Series


def shift_cases(
    series: Mapping[SeriesId, pd.Series], eval_hours: int, seed: int = 0
) -> dict[SeriesId, ShiftCase]:
    """One shift of ``SUBTLE_SHIFTS`` per route metric with a request count series, in the
    last ``eval_hours`` (clear of the first day, like the spikes), at a seeded position with
    ``MIN_SPAN_REQUESTS``. Error rates gain binomial errors at the added rate."""
    rng = np.random.default_rng(seed)
    cases: dict[SeriesId, ShiftCase] = {}
    for key in sorted(series):
        route, metric = key
        counts = series.get((route, "request_count"))
        if metric not in SUBTLE_SHIFTS or counts is None or len(series[key]) < eval_hours:
            continue
        held = series[key].iloc[-eval_hours:]
        n = np.nan_to_num(counts.reindex(held.index).to_numpy(dtype=float), nan=0.0)
        last = eval_hours - SHIFT_HOURS - GRACE_HOURS
        starts = np.arange(24, max(24, last))
        totals = np.array([n[s : s + SHIFT_HOURS].sum() for s in starts])
        eligible = starts[totals >= MIN_SPAN_REQUESTS]
        if len(eligible) == 0:
            continue
        start = int(rng.choice(eligible))
        span = slice(start, start + SHIFT_HOURS)
        values = held.to_numpy(dtype=float).copy()
        if metric == "error_rate":
            requests = n[span].astype(np.int64)
            extra = rng.binomial(requests, SUBTLE_SHIFTS[metric])
            values[span] = np.where(
                requests > 0,
                np.minimum(1.0, values[span] + extra / np.maximum(requests, 1)),
                values[span],
            )
        else:
            values[span] = values[span] * SUBTLE_SHIFTS[metric]
        cases[key] = ShiftCase(key, start, pd.Series(values, index=held.index))
    return cases


@dataclass(frozen=True)
class ShiftEvaluation:
    """Per shifted series: detected or not, false alarms and hours of the clean week."""

    detected: dict[SeriesId, bool]
    false_alarms: dict[SeriesId, int]
    hours: dict[SeriesId, int]

    def recall_replicates(self, units: Sequence[SeriesId], weights: np.ndarray) -> np.ndarray:
        """Recall of the shifts on each row of ``weights`` (multiplicities over ``units``)."""
        values = np.array([float(self.detected.get(u, math.nan)) for u in units])
        return weighted_mean_replicates(values, weights)

    def recall(self, units: Sequence[SeriesId]) -> float:
        return float(self.recall_replicates(units, np.ones((1, len(units))))[0])

    def false_alarms_per_1000(self, units: Sequence[SeriesId]) -> float:
        """False alarms per 1,000 series-hours of the clean held-out week."""
        alarms = sum(self.false_alarms.get(u, 0) for u in units)
        hours = sum(self.hours.get(u, 0) for u in units)
        return 1000.0 * alarms / hours if hours else math.nan


def _test_flags(
    key: SeriesId, series: Mapping[SeriesId, pd.Series], held_out: pd.Series, eval_hours: int
) -> np.ndarray:
    """The shift test's alarms on ``held_out`` with the series' earlier hours as history."""
    route, metric = key
    history = series[key].iloc[:-eval_hours]
    counts = series[(route, "request_count")]
    values = np.concatenate([history.to_numpy(dtype=float), held_out.to_numpy(dtype=float)])
    requests = counts.reindex(series[key].index).to_numpy(dtype=float)
    return route_shifts(metric, values, requests, len(history)).is_shift


def evaluate_shifts(
    fleet: Fleet,
    series: Mapping[SeriesId, pd.Series],
    cases: Mapping[SeriesId, ShiftCase],
    eval_hours: int,
    shift_tests: bool,
) -> ShiftEvaluation:
    """Score every case's shifted and clean held-out week with ``fleet`` (fitted on the hours
    before them), plus the shift test when ``shift_tests``."""
    detected: dict[SeriesId, bool] = {}
    false_alarms: dict[SeriesId, int] = {}
    hours: dict[SeriesId, int] = {}
    for key, case in cases.items():
        detector = fleet.detectors.get(key)
        if detector is None:
            continue
        clean = series[key].iloc[-eval_hours:]
        threshold = fleet.threshold(key)
        flags = np.asarray(detector.score(case.shifted).scores, dtype=float) >= threshold
        clean_flags = np.asarray(detector.score(clean).scores, dtype=float) >= threshold
        if shift_tests:
            flags |= _test_flags(key, series, case.shifted, eval_hours)
            clean_flags |= _test_flags(key, series, clean, eval_hours)
        window = slice(case.start, case.start + SHIFT_HOURS + GRACE_HOURS)
        detected[key] = bool(flags[window].any())
        false_alarms[key] = int(clean_flags.sum())
        hours[key] = len(clean)
    return ShiftEvaluation(detected, false_alarms, hours)
