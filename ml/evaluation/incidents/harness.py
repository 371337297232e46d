"""The incident evaluation's harness: windows, one seed graded, the summary of all seeds.

``llmhub.incident_eval`` generates a seed's two windows of synthetic traffic and ingests them in
process (the domain core); this module grades what comes out (hourly request and alert frames,
the ground truth) and summarises the seeds, as ``llmhub ml eval-incidents`` prints them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import numpy as np
import pandas as pd

from ml.anomaly.fleet import MEMBERS, DetectorSpec
from ml.anomaly.shift_test import COMPANIONS
from ml.evaluation.incidents.detection import (
    DetectionReport,
    FeedbackEffect,
    evaluate_detection,
    fleet_fit_score,
)
from ml.evaluation.incidents.forecast import (
    ForecastScore,
    backtest_request_rate,
    request_rate_series,
)
from ml.evaluation.incidents.ground_truth import incidents_from_ground_truth
from ml.evaluation.incidents.hourly import align_series, build_series
from ml.evaluation.incidents.settings import (
    DETECTORS,
    FORECAST_HORIZON,
    SEASON,
    TARGET_FP_RATE,
    TARGET_RECALL,
    TARGET_TENANT_MAPE,
    WEEKEND_WEIGHT,
)
from ml.features import SHIFT_INPUTS
from ml.forecast import default_ensemble


class Tasks(Protocol):
    """Progress of the steps of a seed (``rich.progress.Progress`` is one)."""

    def add_task(self, description: str, total: float | None = ...) -> Any: ...

    def advance(self, task_id: Any, advance: float = ...) -> None: ...

    def remove_task(self, task_id: Any) -> None: ...


def detector_spec(name: str, shift_tests: bool = False) -> DetectorSpec:
    """The published detector fleet (``ensemble``), a fleet of one member, or members joined by
    "+" fused by their maximum (``robust_baseline+cusum``: spikes or shifts), at the published
    threshold (0.5) and cooldown (64 h); with ``shift_tests`` the spec has them, and its spike
    part is recalibrated with them as the published one is (``DetectorSpec.spike_threshold``).

    Raises:
        ValueError: an unknown detector name.
    """
    if name == "ensemble":
        return DetectorSpec(shift_tests=shift_tests)
    members = tuple(name.split("+"))
    unknown = [m for m in members if m not in DETECTORS and m not in MEMBERS]
    if unknown or not all(members):
        raise ValueError(f"unknown detector {name!r}; choose from {list(DETECTORS)} or a+b")
    return DetectorSpec(
        members=members, fusion="max" if len(members) > 1 else "mean", shift_tests=shift_tests
    )


#: The name under which ``--plain-baseline`` grades the robust baseline without any test.
PLAIN_BASELINE = "robust_baseline (plain)"


#: "Beyond the noise": a paired mean difference over seeds larger than this many standard
#: errors of that mean (``sd / sqrt(n)``), in the direction that favours the detector; the same
#: factor as the model gate's (``ml.promotion``: an advantage over 2 bootstrap sds).
NOISE_STANDARD_ERRORS = 2.0

#: Measure of ``paired_difference`` -> the sign of a difference that favours the detector.
FAVOURED_DIRECTION: dict[str, float] = {"recall_subtle": 1.0, "fp_per_1000_series_hours": -1.0}


def beyond_noise(values: list[float], direction: float) -> dict[str, Any]:
    """Whether the mean of per-seed paired differences is beyond the noise
    (``NOISE_STANDARD_ERRORS`` standard errors, in ``direction``: +1 higher is better, -1 lower).

    Returns:
        ``standard_error`` (None with fewer than two finite values), ``margin`` (the mean in the
        favoured direction over the standard error, None likewise) and ``beyond_noise`` (False
        whenever it cannot be judged).
    """
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if len(finite) < 2:
        return {"standard_error": None, "margin_in_se": None, "beyond_noise": False}
    mean = float(np.mean(finite))
    se = float(np.std(finite, ddof=1)) / math.sqrt(len(finite))
    favoured = direction * mean
    margin = favoured / se if se > 0 else (math.inf if favoured > 0 else 0.0)
    return {
        "standard_error": se,
        "margin_in_se": margin if math.isfinite(margin) else None,
        "beyond_noise": bool(favoured > NOISE_STANDARD_ERRORS * se),
    }


def paired_difference(
    reports: list[DetectionReport], baseline: list[DetectionReport]
) -> dict[str, Any]:
    """Per seed, a detector's subtle recall, recall and false alarms per 1,000 series-hours
    minus the baseline's on the same seed's traffic, with their spread (``spread``); for subtle
    recall and false alarms also the verdict of ``beyond_noise`` (higher recall, fewer false
    alarms), and ``ahead_on_both`` when both are beyond it.

    Raises:
        ValueError: the two lists differ in length (they must be the same seeds).
    """
    if len(reports) != len(baseline):
        raise ValueError("paired reports must cover the same seeds")

    def diff(name: str, figure: Callable[[DetectionReport], float]) -> dict[str, Any]:
        values = [figure(a) - figure(b) for a, b in zip(reports, baseline, strict=True)]
        out = {**spread(values), "per_seed": [_clean(v) for v in values]}
        if name in FAVOURED_DIRECTION:
            out.update(beyond_noise(values, FAVOURED_DIRECTION[name]))
        return out

    paired = {
        "recall_subtle": diff("recall_subtle", subtle_recall),
        "recall": diff("recall", lambda r: r.recall),
        "fp_per_1000_series_hours": diff(
            "fp_per_1000_series_hours", lambda r: r.fp_per_1000_series_hours
        ),
    }
    paired["ahead_on_both"] = all(paired[name]["beyond_noise"] for name in FAVOURED_DIRECTION)
    paired["rule"] = (
        f"paired mean difference beyond {NOISE_STANDARD_ERRORS:g} standard errors "
        "(sd / sqrt(seeds)): subtle recall higher, false alarms lower"
    )
    return paired


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` or ``"0-4"`` (or a mix) as a sorted list of distinct non-negative seeds.

    Raises:
        ValueError: a part is not a seed or range, or no seed is given.
    """
    seeds: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                seeds.update(range(lo, hi + 1))
            else:
                seeds.add(int(part))
        except ValueError:
            raise ValueError(f"not a seed or seed range: {part!r}") from None
    if not seeds or min(seeds) < 0:
        raise ValueError("give at least one non-negative seed")
    return sorted(seeds)


def window_events(events_per_day: int, end: datetime, days: int) -> int:
    """Events for a window of ``days`` ending at ``end`` so that every window has the same
    traffic level: ``events_per_day`` is the mean over a whole week.

    The generator spreads a window's events over its own weekday/weekend weights (weekend hours
    weigh 0.45 of a weekday's in ``llmhub.producers.synthetic``), so a fixed number per day would
    raise the weekday level of a window holding more weekend days and break the continuity of a
    training window and the test window after it.
    """
    hours = pd.date_range(end=end - timedelta(hours=1), periods=24 * days, freq="h")
    weights = np.where(hours.dayofweek >= 5, WEEKEND_WEIGHT, 1.0)
    week_mean = (5 + 2 * WEEKEND_WEIGHT) / 7
    return round(events_per_day * weights.sum() / 24 / week_mean)


@dataclass(frozen=True)
class SeedWindows:
    """The two consecutive windows generated per seed."""

    train_days: int
    test_days: int
    events_per_day: int
    train_end: datetime
    incident_set: str = "gross"

    @property
    def test_end(self) -> datetime:
        return self.train_end + timedelta(days=self.test_days)


def evaluate_windows(
    windows: SeedWindows,
    train: tuple[pd.DataFrame, pd.DataFrame],
    test: tuple[pd.DataFrame, pd.DataFrame],
    train_start: datetime,
    ground_truth: Mapping[str, Any],
    spec: DetectorSpec,
    grace_hours: float,
    forecast_origins: int,
    route_forecasts: bool,
    tasks: Tasks,
    label: str,
    count_test: bool = True,
    shift_test: bool = True,
) -> tuple[DetectionReport, FeedbackEffect, list[ForecastScore], dict[str, Any]]:
    """Grade the detector on one seed's test window and backtest the forecaster on it.

    Args:
        windows: the seed's window lengths and training end.
        train: the training window's hourly request rows and hourly alert counts.
        test: the same for the test window (with the incidents).
        train_start: start of the training window.
        ground_truth: the generator's ground truth of the test window.
        forecast_origins: daily origins of the forecast backtest (0 skips the forecaster).
        route_forecasts: False backtests the tenant totals only.
        tasks: progress of the detection and forecast steps.
        label: how the progress names this seed.
        count_test: run the production count test for stopped traffic beside the detector.
        shift_test: run the production shift test (latency, error rate, cost per request).

    Returns:
        The detection report, the feedback effect, the forecast scores and the seed's figures
        for the JSON output (series, false positives, outcomes, seconds per step).
    """
    # Detection then forecast on the same series, each timed; the docstring is a third of it.
    started = time.perf_counter()
    train_series, test_series = align_series(
        build_series(*train, train_start, windows.train_end),
        build_series(*test, windows.train_end, windows.test_end),
    )
    companions = None
    if shift_test:
        # Time to first token is tested with latency by the shift test, and cost and latency
        # (rules 3 and 4) on geometric means per request; none of them is scored on its own.
        wanted = {*COMPANIONS.values(), *SHIFT_INPUTS}
        train_extra, test_extra = align_series(
            build_series(*train, train_start, windows.train_end, metrics=sorted(wanted)),
            build_series(*test, windows.train_end, windows.test_end, metrics=sorted(wanted)),
        )
        companions = (
            {k: v for k, v in train_extra.items() if k.metric in wanted},
            {k: v for k, v in test_extra.items() if k.metric in wanted},
        )
    incidents, bursts = incidents_from_ground_truth(ground_truth)
    detect = tasks.add_task(f"{label}: detect", total=len(test_series))
    # Feedback: an analyst marks every false alarm of the first half of the test window; the
    # thresholds tuned from them are applied to the second half (see feedback_effect_on_incidents).
    split = pd.Timestamp(windows.train_end) + pd.Timedelta(days=windows.test_days / 2)
    report, feedback = evaluate_detection(
        train_series,
        test_series,
        incidents,
        bursts,
        fit_score=fleet_fit_score(spec, lambda _: tasks.advance(detect)),
        grace_hours=grace_hours,
        feedback_split=split.floor("h"),
        threshold=spec.threshold,
        count_test=count_test,
        shift_test=shift_test,
        companions=companions,
        shift_rules=spec.shift_rules,
    )
    tasks.remove_task(detect)
    detected = time.perf_counter()

    scores: list[ForecastScore] = []
    if forecast_origins:
        # The published forecaster (build_forecaster of the forecaster's pyfunc: adaptive_naive,
        # sarima and prophet, season 24, weekly season 168, level 0.95).
        forecaster = default_ensemble(SEASON, 0.95, weekly_season=7 * SEASON)
        tenants, routes = request_rate_series(train_series, test_series)
        if not route_forecasts:
            routes = {}
        task = tasks.add_task(f"{label}: forecast", total=len(tenants) + len(routes))
        for level, group in (("tenant", tenants), ("route", routes)):
            scores += backtest_request_rate(
                group,
                level,
                forecaster,
                test_hours=24 * windows.test_days,
                horizon=FORECAST_HORIZON,
                season=SEASON,
                n_origins=forecast_origins,
                on_series=lambda _: tasks.advance(task),
            )
        tasks.remove_task(task)
    finished = time.perf_counter()
    details = {
        "series": report.series,
        "series_hours": report.series_hours,
        "false_positives": report.false_positives,
        "feedback": feedback.to_dict(),
        "outcomes": [o.to_dict() for o in report.outcomes],
        "forecast_series": len(scores),
        "seconds": {
            "detect": round(detected - started, 1),
            "forecast": round(finished - detected, 1),
        },
    }
    return report, feedback, scores, details


def _clean(value: Any) -> Any:
    """JSON-ready: NaN becomes null, containers recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _target(value: float | None, met: Callable[[float], bool]) -> dict[str, Any]:
    defined = value is not None and math.isfinite(value)
    return {"value": value if defined else None, "met": met(value) if defined else None}


def magnitude_bin(kind: str, magnitude: float | None) -> str:
    """The magnitude class an incident's recall is reported under: a rate by whole percent
    below 10% (``"3%"``) and by tens above (``"40%"``), a multiplier by tenths (``"x1.3"``)."""
    if magnitude is None or not math.isfinite(magnitude):
        return "n/a"
    if kind.endswith("errors") or kind == "error_storm":
        percent = 100 * magnitude
        return f"{int(percent)}%" if percent < 10 else f"{10 * int(percent // 10)}%"
    if kind == "traffic_stop":
        return "stop"
    return f"x{math.floor(10 * magnitude + 1e-9) / 10:.1f}"


def by_kind_magnitude(report: DetectionReport) -> dict[str, dict[str, dict[str, Any]]]:
    """Recall and mean delay per incident kind and magnitude class (``magnitude_bin``)."""
    groups: dict[str, dict[str, list[Any]]] = {}
    for outcome in report.outcomes:
        cell = magnitude_bin(outcome.kind, outcome.magnitude)
        groups.setdefault(outcome.kind, {}).setdefault(cell, []).append(outcome)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for kind in sorted(groups):
        out[kind] = {}
        for cell in sorted(groups[kind]):
            chosen = groups[kind][cell]
            delays = [o.delay_hours for o in chosen if o.delay_hours is not None]
            out[kind][cell] = {
                "incidents": len(chosen),
                "recall": sum(o.detected for o in chosen) / len(chosen),
                "mean_delay_hours": float(np.mean(delays)) if delays else None,
            }
    return out


def spread(values: list[float]) -> dict[str, Any]:
    """Mean, sample standard deviation, min and max of per-seed figures (NaN left out)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return {"mean": None, "sd": None, "min": None, "max": None, "n": 0}
    return {
        "mean": float(np.mean(finite)),
        "sd": float(np.std(finite, ddof=1)) if len(finite) > 1 else None,
        "min": float(min(finite)),
        "max": float(max(finite)),
        "n": len(finite),
    }


SUBTLE_KINDS = ("subtle_latency", "subtle_cost", "subtle_errors")


def subtle_recall(report: DetectionReport) -> float:
    """Recall on the subtle kinds together (``nan`` without any)."""
    chosen = [o for o in report.outcomes if o.kind in SUBTLE_KINDS]
    return sum(o.detected for o in chosen) / len(chosen) if chosen else math.nan


def seed_spread(reports: list[DetectionReport]) -> dict[str, Any]:
    """Per-seed recall (overall, per kind, on the subtle kinds together) and false alarms per
    1,000 series-hours, with their spread over the seeds."""
    kinds = sorted({o.kind for r in reports for o in r.outcomes})

    def kind_delay(report: DetectionReport, kind: str) -> float:
        delay = report.by_kind().get(kind)
        return (
            math.nan if delay is None or delay.mean_delay_hours is None else delay.mean_delay_hours
        )

    return {
        "recall": spread([r.recall for r in reports]),
        "recall_subtle": spread([subtle_recall(r) for r in reports]),
        "fp_per_1000_series_hours": spread([r.fp_per_1000_series_hours for r in reports]),
        "recall_by_kind": {
            kind: spread(
                [r.by_kind()[kind].recall if kind in r.by_kind() else math.nan for r in reports]
            )
            for kind in kinds
        },
        "delay_hours_by_kind": {
            kind: spread([kind_delay(r, kind) for r in reports]) for kind in kinds
        },
    }


def summary_dict(
    detector: str,
    seeds: list[int],
    report: DetectionReport,
    forecast: dict[str, Any] | None,
    per_seed: list[dict[str, Any]],
    config: dict[str, Any],
) -> dict[str, Any]:
    """The command's JSON object (NaN as null)."""
    kinds = report.by_kind()
    tenant_mape = forecast.get("tenant_mape") if forecast else None
    summary = {
        "detector": detector,
        "seeds": seeds,
        "incidents": len(report.outcomes),
        "detected": sum(o.detected for o in report.outcomes),
        "recall": report.recall,
        "recall_by_kind": {kind: s.recall for kind, s in kinds.items()},
        "incidents_by_kind": {kind: s.incidents for kind, s in kinds.items()},
        "mean_delay_hours_by_kind": {kind: s.mean_delay_hours for kind, s in kinds.items()},
        "by_kind_magnitude": by_kind_magnitude(report),
        "false_positives": report.false_positives,
        "false_positives_by_metric": dict(report.false_positive_metrics),
        "true_positive_flags": report.true_positive_flags,
        "explained_flags": report.explained_flags,
        "rate_limit_burst_flags": report.burst_flags,
        "series": report.series,
        "series_hours": report.series_hours,
        "fp_per_1000_series_hours": report.fp_per_1000_series_hours,
        "fp_rate": report.fp_rate,
        "precision": report.precision,
        "forecast": forecast,
        "targets": {
            f"recall>={TARGET_RECALL}": _target(report.recall, lambda v: v >= TARGET_RECALL),
            f"fp_rate<{TARGET_FP_RATE}": _target(report.fp_rate, lambda v: v < TARGET_FP_RATE),
            f"tenant_mape<{TARGET_TENANT_MAPE:g}%": _target(
                tenant_mape, lambda v: v < TARGET_TENANT_MAPE
            ),
        },
        "config": config,
        "per_seed": per_seed,
    }
    return _clean(summary)
