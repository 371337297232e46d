"""Subtle shifts injected into the held-out week: the detector gate's second evaluation.

The spike evaluation (``ml.anomaly.training``) asks whether a candidate ranks single hours of
3-6 robust sigmas above clean hours. A slower model version (latency x1.4 for six hours), a
price change (cost per request x1.3) or an error rate three points up on one route moves each
of its hours by about their noise, and is invisible there. Here every route gets one such
shift per metric, in the held-out week at a seeded position where the route has traffic; a
candidate detects it when it flags that series within the shift or the ``GRACE_HOURS`` after.
Each route metric is shifted at ``CASES_PER_SERIES`` positions, one at a time, and scores the
share it detects: the resamples of the gate stay resamples of series, and a series' share
varies less than one hit or miss, so the recall's noise (and the margin a challenger must
win by) is smaller, and a verdict depends less on where one shift happened to fall.
A candidate whose spec has ``shift_tests`` adds the alarms of ``ml.anomaly.shift_test``
(latency without its time to first token: the detector's series do not carry it), on the same
history the scoring asset gives them.

False alarms are counted as the incident evaluation (``ml.evaluation.incidents``) counts them,
on the real held-out week without the injected shift, the same way for every candidate:

* Only what would be published counts. A detector flag counts on the hours the scoring asset
  judges (``judged``: the series had traffic, and a rate or percentile at least
  ``MIN_RATE_REQUESTS`` requests); a shift-test alarm counts wherever it is raised (the scoring
  asset publishes it whatever the hour's volume). The series-hours are the judged hours and
  the hours a shift test flagged.
* Hours the hub knows are not clean are left out, flags and hours alike (``KnownWindow``): an
  incident it opened (``analytics.incidents``, when more than the detector's own anomalies
  support it), a registry change of the route's model or
  application and the ``CHANGE_HOURS`` after it, an anomaly an analyst marked a true positive;
  each with the ``GRACE_HOURS`` after it, as in the recall. The held-out week is real traffic,
  and a flag on a model rollout the registry announced is a detection, not a false alarm.

Incidents the hub does not know of (on a fresh install: every incident before its first
scoring run) still count as false alarms, for every candidate alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ml.anomaly.fleet import Fleet, SeriesId
from ml.anomaly.shift_test import GEOMETRIC_INPUTS, route_shifts
from ml.keys import RouteKey
from ml.promotion import weighted_mean_replicates

#: Metric -> the injected shift: a factor, or for the error rate the points added.
SUBTLE_SHIFTS: dict[str, float] = {"latency_p95_ms": 1.4, "cost_usd": 1.3, "error_rate": 0.03}
SHIFT_HOURS = 6
GRACE_HOURS = 2
#: A shift is placed where the route serves at least this many requests over its hours (a shift
#: of a route without traffic is no incident).
MIN_SPAN_REQUESTS = 120
#: Positions per route metric (distinct starts, each scored on its own). One position left
#: the demo's gate within 1.2 noise margins of its verdict on some weeks (benchmarks/
#: demo_gate_verdicts.py: one window of 24 flipped).
CASES_PER_SERIES = 3
#: A registry change moves the level of its routes. Until every reference has taken in the new
#: level -- the longest, the error-rate test's, spans a week -- the routes' flags are the
#: change's, not false alarms.
CHANGE_HOURS = 168


@dataclass(frozen=True)
class KnownWindow:
    """Hours the hub knows a route was not clean: ``[start, end)`` UTC.

    Attributes:
        tenant_id: the tenant.
        application_id: the application; None: every application of the tenant.
        model: the model; None: every model the application calls.
        start, end: the window (timezone-aware, or naive UTC).
        reason: what the hub knows (``incident``, ``registry_change``, ``true_positive``).
    """

    tenant_id: str
    application_id: str | None
    model: str | None
    start: pd.Timestamp
    end: pd.Timestamp
    reason: str

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            at = pd.Timestamp(getattr(self, name))
            object.__setattr__(
                self, name, at.tz_localize("UTC") if at.tzinfo is None else at.tz_convert("UTC")
            )

    def covers(self, route: RouteKey) -> bool:
        """Whether the window is about ``route``."""
        return (
            route.tenant_id == self.tenant_id
            and self.application_id in (None, route.application_id)
            and self.model in (None, route.model)
        )


def known_hours(
    index: pd.DatetimeIndex, route: RouteKey, windows: Sequence[KnownWindow]
) -> np.ndarray:
    """Which hours of ``index`` (hour starts, UTC) overlap a window about ``route`` or the
    ``GRACE_HOURS`` after it."""
    index = pd.DatetimeIndex(index)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    mask = np.zeros(len(index), dtype=bool)
    hour, grace = pd.Timedelta(hours=1), pd.Timedelta(hours=GRACE_HOURS)
    for window in windows:
        if window.covers(route):
            mask |= np.asarray((index < window.end + grace) & (index + hour > window.start))
    return mask


@dataclass(frozen=True)
class ShiftCase:
    """One injected shift: the held-out values with it, and where it starts."""

    key: SeriesId
    start: int
    shifted: pd.Series


def shift_cases(
    series: Mapping[SeriesId, pd.Series],
    eval_hours: int,
    seed: int = 0,
    per_series: int = CASES_PER_SERIES,
) -> dict[SeriesId, tuple[ShiftCase, ...]]:
    """Shifts of ``SUBTLE_SHIFTS`` per route metric with a request count series, in the last
    ``eval_hours`` (clear of the first day, like the spikes), at ``per_series`` distinct seeded
    positions with ``MIN_SPAN_REQUESTS`` (fewer where fewer qualify), one shift per case. Error
    rates gain binomial errors at the added rate."""
    if per_series < 1:
        raise ValueError("per_series must be >= 1")
    rng = np.random.default_rng(seed)
    cases: dict[SeriesId, tuple[ShiftCase, ...]] = {}
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
        chosen = rng.choice(eligible, size=min(per_series, len(eligible)), replace=False)
        key_cases = []
        for start in sorted(int(s) for s in chosen):
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
            key_cases.append(ShiftCase(key, start, pd.Series(values, index=held.index)))
        cases[key] = tuple(key_cases)
    return cases


@dataclass(frozen=True)
class ShiftEvaluation:
    """Per shifted series: the share of its cases detected; on the week without the shift,
    the false alarms
    and the series-hours they are counted on (published flags, outside known windows), and
    what was left out: the hours in known windows and the flags there, the detector's flags on
    hours that are not judged."""

    detected: dict[SeriesId, float]
    false_alarms: dict[SeriesId, int]
    hours: dict[SeriesId, int]
    known_hours: dict[SeriesId, int] = field(default_factory=dict)
    known_flags: dict[SeriesId, int] = field(default_factory=dict)
    unjudged_flags: dict[SeriesId, int] = field(default_factory=dict)

    def recall_replicates(self, units: Sequence[SeriesId], weights: np.ndarray) -> np.ndarray:
        """Recall of the shifts on each row of ``weights`` (multiplicities over ``units``)."""
        values = np.array([float(self.detected.get(u, math.nan)) for u in units])
        return weighted_mean_replicates(values, weights)

    def recall(self, units: Sequence[SeriesId]) -> float:
        return float(self.recall_replicates(units, np.ones((1, len(units))))[0])

    def false_alarms_per_1000(self, units: Sequence[SeriesId]) -> float:
        """False alarms per 1,000 counted series-hours of the held-out week."""
        counted = self.accounting(units)
        hours = counted["series_hours"]
        return 1000.0 * counted["false_alarms"] / hours if hours else math.nan

    def false_alarm_replicates(self, units: Sequence[SeriesId], weights: np.ndarray) -> np.ndarray:
        """False alarms per 1,000 counted series-hours on each row of ``weights``
        (multiplicities over ``units``): alarms and hours are both summed over the resample."""
        alarms = np.array([self.false_alarms.get(u, 0) for u in units], dtype=float)
        hours = np.array([self.hours.get(u, 0) for u in units], dtype=float)
        w = np.asarray(weights, dtype=float)
        total = w @ hours
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(
                total > 0, 1000.0 * (w @ alarms) / np.where(total > 0, total, 1), np.nan
            )

    def accounting(self, units: Sequence[SeriesId]) -> dict[str, float]:
        """The false alarms' accounting over ``units``: counted alarms and series-hours, and
        what was left out."""
        return {
            "false_alarms": float(sum(self.false_alarms.get(u, 0) for u in units)),
            "series_hours": float(sum(self.hours.get(u, 0) for u in units)),
            "known_window_hours": float(sum(self.known_hours.get(u, 0) for u in units)),
            "known_window_flags": float(sum(self.known_flags.get(u, 0) for u in units)),
            "unjudged_flags": float(sum(self.unjudged_flags.get(u, 0) for u in units)),
        }


def _geometric(
    key: SeriesId,
    series: Mapping[SeriesId, pd.Series],
    held_out: pd.Series,
    eval_hours: int,
    shift_inputs: Mapping[SeriesId, pd.Series],
) -> tuple[np.ndarray, np.ndarray] | None:
    """The ``GEOMETRIC_INPUTS`` of ``key`` on its grid, the injected factor (``held_out`` over
    the real held-out values) added to the mean of logs: a cost or latency x f moves every
    request's log value by ``log f``. None when the inputs are not there."""
    route, metric = key
    names = GEOMETRIC_INPUTS[metric]
    if any((route, name) not in shift_inputs for name in names):
        return None
    index = series[key].index
    log_mean, counted = (
        shift_inputs[(route, name)].reindex(index).to_numpy(dtype=float) for name in names
    )
    real = series[key].iloc[-eval_hours:].to_numpy(dtype=float)
    given = held_out.to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where((real > 0) & (given > 0), given / real, 1.0)
    log_mean = log_mean.copy()
    log_mean[-eval_hours:] += np.log(factor)
    return log_mean, counted


def _test_flags(
    key: SeriesId,
    series: Mapping[SeriesId, pd.Series],
    held_out: pd.Series,
    eval_hours: int,
    rules: int,
    shift_inputs: Mapping[SeriesId, pd.Series] | None = None,
) -> np.ndarray:
    """The shift test's alarms on ``held_out`` with the series' earlier hours as history."""
    route, metric = key
    history = series[key].iloc[:-eval_hours]
    counts = series[(route, "request_count")]
    values = np.concatenate([history.to_numpy(dtype=float), held_out.to_numpy(dtype=float)])
    requests = counts.reindex(series[key].index).to_numpy(dtype=float)
    geometric = (
        _geometric(key, series, held_out, eval_hours, shift_inputs)
        if rules >= 3 and metric in GEOMETRIC_INPUTS and shift_inputs is not None
        else None
    )
    return route_shifts(
        metric, values, requests, len(history), rules=rules, geometric=geometric
    ).is_shift


def evaluate_shifts(
    fleet: Fleet,
    series: Mapping[SeriesId, pd.Series],
    cases: Mapping[SeriesId, Sequence[ShiftCase]],
    eval_hours: int,
    shift_tests: bool,
    *,
    judged: Mapping[SeriesId, pd.Series] | None = None,
    known: Sequence[KnownWindow] = (),
    shift_inputs: Mapping[SeriesId, pd.Series] | None = None,
) -> ShiftEvaluation:
    """Score every case's shifted and every series' real held-out week with ``fleet`` (fitted
    on the hours before them), plus the shift test when ``shift_tests``; a series' recall is
    the share of its cases detected.

    Args:
        judged: per series, the hours whose detector flags the scoring asset publishes
            (``llmhub.ml_data.DetectorInput.active``); a series without one: every hour.
        known: windows the hub knows are not clean (series ids are then encoded
            ``ml.keys.RouteKey`` values); their hours count neither as alarms nor as hours.
        shift_inputs: per (series id, one of ``ml.features.SHIFT_INPUTS``), the raw series
            the tests of rules 3 and 4 read for cost and latency
            (``ml.anomaly.shift_test.GEOMETRIC_INPUTS``; the gate's latency is tested without its
            time to first token, as before).
    """
    detected: dict[SeriesId, float] = {}
    false_alarms: dict[SeriesId, int] = {}
    hours: dict[SeriesId, int] = {}
    known_hours_: dict[SeriesId, int] = {}
    known_flags: dict[SeriesId, int] = {}
    unjudged_flags: dict[SeriesId, int] = {}
    rules = fleet.spec.shift_rules
    for key, key_cases in cases.items():
        detector = fleet.detectors.get(key)
        if detector is None or not key_cases:
            continue
        clean = series[key].iloc[-eval_hours:]
        mask = judged.get(key) if judged is not None else None
        published = (
            np.ones(len(clean), dtype=bool)
            if mask is None
            else mask.reindex(clean.index, fill_value=False).to_numpy(dtype=bool)
        )
        threshold = fleet.threshold(key)
        hits = []
        for case in key_cases:
            flags = np.asarray(detector.score(case.shifted).scores, dtype=float) >= threshold
            flags &= published
            if shift_tests:
                flags |= _test_flags(key, series, case.shifted, eval_hours, rules, shift_inputs)
            hits.append(bool(flags[case.start : case.start + SHIFT_HOURS + GRACE_HOURS].any()))
        clean_flags = np.asarray(detector.score(clean).scores, dtype=float) >= threshold
        unjudged = clean_flags & ~published
        clean_flags &= published
        counted = published.copy()
        if shift_tests:
            tested = _test_flags(key, series, clean, eval_hours, rules, shift_inputs)
            unjudged &= ~tested
            clean_flags |= tested
            counted |= tested
        outside = (
            ~known_hours(clean.index, RouteKey.decode(key[0]), known)
            if known
            else np.ones(len(clean), dtype=bool)
        )
        detected[key] = float(np.mean(hits))
        false_alarms[key] = int((clean_flags & outside).sum())
        hours[key] = int((counted & outside).sum())
        known_hours_[key] = int((~outside).sum())
        known_flags[key] = int((clean_flags & ~outside).sum())
        unjudged_flags[key] = int((unjudged & outside).sum())
    return ShiftEvaluation(detected, false_alarms, hours, known_hours_, known_flags, unjudged_flags)
