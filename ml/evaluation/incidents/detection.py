"""Detection grading: incidents matched to flags, false positives, the feedback effect."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import astuple, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ml.anomaly.base import DetectorResult
from ml.anomaly.count_test import stopped_hours
from ml.anomaly.feedback import tune_thresholds
from ml.anomaly.fleet import DetectorSpec, Fleet
from ml.anomaly.shift_test import (
    SHIFT_METRICS,
    SHIFT_RULES,
    read_beside,
    route_shifts,
)
from ml.evaluation.incidents.base import (
    GRACE_HOURS,
    HOUR,
    FitScore,
    IncidentEvaluationError,
    SeriesMap,
)
from ml.evaluation.incidents.ground_truth import IncidentLabel
from ml.evaluation.incidents.hourly import require_columns
from ml.features import (
    SECURITY_ALERTS,
    SECURITY_ALERTS_MODEL,
    SERIES_COLUMNS,
    SeriesKey,
    fill_idle_hours,
    judged_hours,
)


def series_id(key: SeriesKey) -> str:
    """The route of a series key as one collision-free string (an encoded ``ml.keys.RouteKey``:
    ids may contain "/")."""
    return key.route.encode()


def fleet_fit_score(
    spec: DetectorSpec | None = None, on_series: Callable[[SeriesKey], None] | None = None
) -> FitScore:
    """The detection step production runs: the detector fleet of ``spec`` (default the
    published ``DetectorSpec()``, shared LSTM) fitted on every training series once, then each
    fitted detector scores its series' test window online, as the hourly scoring does.

    Args:
        spec: the fleet configuration.
        on_series: called after each series is scored (progress).
    """

    def fit_score(train: SeriesMap, test: SeriesMap) -> dict[SeriesKey, DetectorResult]:
        ids = {key: (series_id(key), key.metric) for key in train}
        fleet = Fleet.fit(spec or DetectorSpec(), {ids[key]: train[key] for key in train})
        results: dict[SeriesKey, DetectorResult] = {}
        for key, values in test.items():
            scored = fleet.score({ids[key]: values}).results.get(ids[key])
            if scored is None:
                raise IncidentEvaluationError(f"{key.label()}: the fleet could not score it")
            results[key] = scored
            if on_series is not None:
                on_series(key)
        return results

    return fit_score


def scored_hours(
    results: Mapping[SeriesKey, DetectorResult], active: Mapping[SeriesKey, np.ndarray]
) -> pd.DataFrame:
    """One row per scored series-hour: the series key, ``bucket_at``, ``active``, ``flagged``.

    ``flagged`` is the detector's decision; an idle hour keeps ``active`` False so the matching
    never counts it.
    """
    frames = []
    for key, result in results.items():
        mask = np.asarray(active[key], dtype=bool)
        if len(mask) != len(result.index):
            raise IncidentEvaluationError(f"{key.label()}: activity mask and result differ")
        frames.append(
            pd.DataFrame(
                {
                    "tenant_id": key.tenant_id,
                    "asset_id": key.asset_id,
                    "request_model": key.request_model,
                    "metric": key.metric,
                    "bucket_at": pd.DatetimeIndex(result.index),
                    "active": mask,
                    "flagged": np.asarray(result.is_anomaly, dtype=bool),
                    "score": np.asarray(result.scores, dtype=float),
                }
            )
        )
    if not frames:
        raise IncidentEvaluationError("no detector results to match")
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class IncidentOutcome:
    """Whether one incident was detected, and when.

    ``delay_hours`` runs from the incident's start to the END of the first hour that flagged it
    (an hourly score exists once the hour has closed); None when undetected.
    """

    kind: str
    tenant_id: str | None
    asset_id: str | None
    model: str | None
    metric: str
    start: pd.Timestamp
    end: pd.Timestamp
    target_series: int
    detected: bool
    delay_hours: float | None
    first_flag_at: pd.Timestamp | None
    magnitude: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "kind": self.kind,
            "tenant_id": self.tenant_id,
            "asset_id": self.asset_id,
            "model": self.model,
            "metric": self.metric,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "target_series": self.target_series,
            "detected": self.detected,
            "delay_hours": self.delay_hours,
            "first_flag_at": None if self.first_flag_at is None else self.first_flag_at.isoformat(),
            "magnitude": self.magnitude,
        }


@dataclass(frozen=True)
class KindSummary:
    """Recall and mean detection delay of one incident kind."""

    incidents: int
    detected: int
    recall: float
    mean_delay_hours: float | None


@dataclass(frozen=True)
class DetectionReport:
    """Incident-level recall and hour-level false positives of one or more evaluations.

    Attributes:
        outcomes: one per graded incident.
        true_positive_flags: flagged active hours on an incident's metric and targets in its span.
        explained_flags: flagged active hours on an incident's targets, other metrics, in its span.
        burst_flags: flagged active hours excluded for a rate-limit burst on their route.
        false_positives: every other flagged active hour.
        series_hours: active series-hours scored (idle hours are not scored).
        series: series scored.
    """

    outcomes: tuple[IncidentOutcome, ...] = ()
    true_positive_flags: int = 0
    explained_flags: int = 0
    burst_flags: int = 0
    false_positives: int = 0
    series_hours: int = 0
    series: int = 0
    false_positive_metrics: Mapping[str, int] = field(default_factory=dict)

    def __add__(self, other: DetectionReport) -> DetectionReport:
        metrics = dict(self.false_positive_metrics)
        for metric, count in other.false_positive_metrics.items():
            metrics[metric] = metrics.get(metric, 0) + count
        return DetectionReport(
            outcomes=self.outcomes + other.outcomes,
            true_positive_flags=self.true_positive_flags + other.true_positive_flags,
            explained_flags=self.explained_flags + other.explained_flags,
            burst_flags=self.burst_flags + other.burst_flags,
            false_positives=self.false_positives + other.false_positives,
            series_hours=self.series_hours + other.series_hours,
            series=self.series + other.series,
            false_positive_metrics=dict(sorted(metrics.items())),
        )

    @property
    def recall(self) -> float:
        """Detected incidents over incidents (``nan`` without incidents)."""
        if not self.outcomes:
            return math.nan
        return sum(o.detected for o in self.outcomes) / len(self.outcomes)

    @property
    def fp_rate(self) -> float:
        """False positives per active series-hour."""
        return self.false_positives / self.series_hours if self.series_hours else math.nan

    @property
    def fp_per_1000_series_hours(self) -> float:
        """False positives per 1,000 active series-hours."""
        return 1000.0 * self.fp_rate

    @property
    def precision(self) -> float:
        """True-positive flags over true-positive plus false-positive flags (hours)."""
        flags = self.true_positive_flags + self.false_positives
        return self.true_positive_flags / flags if flags else math.nan

    def by_kind(self) -> dict[str, KindSummary]:
        """Recall and mean delay per incident kind, kinds sorted."""
        summary = {}
        for kind in sorted({o.kind for o in self.outcomes}):
            chosen = [o for o in self.outcomes if o.kind == kind]
            delays = [o.delay_hours for o in chosen if o.delay_hours is not None]
            detected = sum(o.detected for o in chosen)
            summary[kind] = KindSummary(
                incidents=len(chosen),
                detected=detected,
                recall=detected / len(chosen),
                mean_delay_hours=float(np.mean(delays)) if delays else None,
            )
        return summary


def _route_mask(frame: pd.DataFrame, incident: IncidentLabel, alerts: bool) -> pd.Series:
    if alerts:
        mask = frame["request_model"] == SECURITY_ALERTS_MODEL
    else:
        mask = frame["request_model"] != SECURITY_ALERTS_MODEL
        if incident.model is not None:
            mask &= frame["request_model"] == incident.model
    if incident.tenant_id is not None:
        mask &= frame["tenant_id"] == incident.tenant_id
    if incident.asset_id is not None:
        mask &= frame["asset_id"] == incident.asset_id
    return mask


def _overlaps(frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
    return (frame["bucket_at"] + HOUR > start) & (frame["bucket_at"] < end)


def match_incidents(
    scored: pd.DataFrame,
    incidents: Sequence[IncidentLabel],
    bursts: Sequence[IncidentLabel] = (),
    grace_hours: float = GRACE_HOURS,
) -> DetectionReport:
    """Match flagged hours to the ground truth (rules in the module docstring).

    Args:
        scored: ``scored_hours`` rows.
        incidents: the graded incidents.
        bursts: rate-limit bursts; flags on their route in an hour they overlap are excluded.
        grace_hours: hours after an incident's end in which a flag still detects it.
    """
    return classify_flags(scored, incidents, bursts, grace_hours)[0]


def classify_flags(
    scored: pd.DataFrame,
    incidents: Sequence[IncidentLabel],
    bursts: Sequence[IncidentLabel] = (),
    grace_hours: float = GRACE_HOURS,
) -> tuple[DetectionReport, pd.Series]:
    """``match_incidents``, and which rows of ``scored`` (index reset) are false positives."""
    require_columns(
        scored,
        [*SERIES_COLUMNS, "metric", "bucket_at", "active", "flagged"],
        "scored hours",
    )
    frame = scored.reset_index(drop=True)
    frame["bucket_at"] = pd.to_datetime(frame["bucket_at"], utc=True)
    flagged = frame["flagged"].astype(bool) & frame["active"].astype(bool)
    hit = pd.Series(False, index=frame.index)
    explained = pd.Series(False, index=frame.index)
    grace = pd.Timedelta(hours=grace_hours)
    outcomes = []
    for incident in incidents:
        metric = incident.target_metric
        targets = _route_mask(frame, incident, alerts=metric == SECURITY_ALERTS)
        in_span = targets & _overlaps(frame, incident.start, incident.end + grace) & flagged
        hits = in_span & (frame["metric"] == metric)
        hit |= hits
        explained |= in_span & (frame["metric"] != metric)
        first = frame.loc[hits, "bucket_at"].min() if hits.any() else None
        delay = None
        if first is not None:
            delay = max(0.0, (first + HOUR - incident.start) / HOUR)
        n_targets = frame.loc[targets & (frame["metric"] == metric), list(SERIES_COLUMNS)]
        outcomes.append(
            IncidentOutcome(
                kind=incident.kind,
                tenant_id=incident.tenant_id,
                asset_id=incident.asset_id,
                model=incident.model,
                metric=metric,
                start=incident.start,
                end=incident.end,
                target_series=len(n_targets.drop_duplicates()),
                detected=first is not None,
                delay_hours=delay,
                first_flag_at=first,
                magnitude=incident.magnitude,
            )
        )
    burst = pd.Series(False, index=frame.index)
    for event in bursts:
        route = (
            (frame["tenant_id"] == event.tenant_id)
            & (frame["asset_id"] == event.asset_id)
            & (frame["request_model"] == event.model)
        )
        burst |= route & _overlaps(frame, event.start, event.end) & flagged
    explained &= ~hit
    burst &= ~(hit | explained)
    false_positive = flagged & ~(hit | explained | burst)
    return _report(frame, outcomes, hit, explained, burst, false_positive), false_positive


def _report(
    frame: pd.DataFrame,
    outcomes: list[IncidentOutcome],
    hit: pd.Series,
    explained: pd.Series,
    burst: pd.Series,
    false_positive: pd.Series,
) -> DetectionReport:
    by_metric = frame.loc[false_positive, "metric"].value_counts().sort_index()
    keys = frame[[*SERIES_COLUMNS, "metric"]].drop_duplicates()
    return DetectionReport(
        outcomes=tuple(outcomes),
        true_positive_flags=int(hit.sum()),
        explained_flags=int(explained.sum()),
        burst_flags=int(burst.sum()),
        false_positives=int(false_positive.sum()),
        series_hours=int(frame["active"].astype(bool).sum()),
        series=len(keys),
        false_positive_metrics={str(k): int(v) for k, v in by_metric.items()},
    )


def evaluate_detection(
    train: SeriesMap,
    test: SeriesMap,
    incidents: Sequence[IncidentLabel],
    bursts: Sequence[IncidentLabel] = (),
    fit_score: FitScore | None = None,
    grace_hours: float = GRACE_HOURS,
    feedback_split: pd.Timestamp | None = None,
    threshold: float = 0.5,
    count_test: bool = False,
    shift_test: bool = False,
    companions: tuple[SeriesMap, SeriesMap] | None = None,
    shift_rules: int = SHIFT_RULES,
) -> DetectionReport | tuple[DetectionReport, FeedbackEffect]:
    """Fit on the clean window, score the incident window, match the flags to the ground truth.

    With ``feedback_split``, also the ``feedback_effect_on_incidents`` of marking the false
    positives before it (``threshold``: the detector's), returned with the report.

    Args:
        train: raw series of the training window (``build_series``).
        test: raw series of the test window that follows it, same keys (``align_series``).
        incidents: the graded incidents of the test window.
        bursts: the test window's rate-limit bursts.
        fit_score: the detection step (default ``fleet_fit_score()``, the published
            ensemble per series).
        grace_hours: see ``match_incidents``.
        count_test: also run the production count test for traffic that stops on every request
            count (``with_stop_flags``), as the scoring asset does beside the detector.
        shift_test: also run the shift test on every route's latency, error rate and cost per
            request (``with_shift_flags``).
        shift_rules: the shift tests' rules (the spec's ``DetectorSpec.shift_rules``).

    Raises:
        IncidentEvaluationError: the keys differ or the detection step left a series out.
    """
    if train.keys() != test.keys():
        raise IncidentEvaluationError("train and test windows must hold the same series")
    filled_train = {key: fill_idle_hours(values, key.metric)[0] for key, values in train.items()}
    filled_test: SeriesMap = {}
    active: dict[SeriesKey, np.ndarray] = {}
    for key, values in test.items():
        filled_test[key], active[key] = fill_idle_hours(values, key.metric)
        route = (key.tenant_id, key.asset_id, key.request_model)
        counts = test.get(SeriesKey(*route, "request_count"))
        if counts is not None:
            active[key] = judged_hours(active[key], counts.fillna(0).to_numpy(), key.metric)
    step = fit_score if fit_score is not None else fleet_fit_score()
    results = step(filled_train, filled_test)
    missing = filled_test.keys() - results.keys()
    if missing:
        raise IncidentEvaluationError(
            f"the detection step returned no result for {len(missing)} series, "
            f"e.g. {min(missing).label()}"
        )
    scored = scored_hours(results, active)
    if count_test:
        scored = with_stop_flags(scored, filled_train, filled_test)
    if shift_test:
        scored = with_shift_flags(scored, train, test, companions, shift_rules)
    report = match_incidents(scored, incidents, bursts, grace_hours)
    if feedback_split is None:
        return report
    return report, feedback_effect_on_incidents(
        scored, incidents, bursts, feedback_split, threshold, grace_hours=grace_hours
    )


def _merge_flags(scored: pd.DataFrame, flags: list[pd.DataFrame]) -> pd.DataFrame:
    """``scored`` with the rows of ``flags`` (keys and ``_score``) flagged, judged, and scored
    the larger of both."""
    if not flags:
        return scored
    keys = [*SERIES_COLUMNS, "metric", "bucket_at"]
    merged = scored.merge(pd.concat(flags, ignore_index=True), on=keys, how="left")
    hit = merged["_score"].notna().to_numpy()
    merged.loc[hit, "flagged"] = True
    merged.loc[hit, "active"] = True
    merged.loc[hit, "score"] = np.maximum(
        merged.loc[hit, "score"].to_numpy(), merged.loc[hit, "_score"].to_numpy()
    )
    return merged.drop(columns="_score")


def _flag_frame(key: SeriesKey, at: pd.Index, score: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "tenant_id": key.tenant_id,
            "asset_id": key.asset_id,
            "request_model": key.request_model,
            "metric": key.metric,
            "bucket_at": pd.DatetimeIndex(at),
            "_score": score,
        }
    )


def with_shift_flags(
    scored: pd.DataFrame,
    train: SeriesMap,
    test: SeriesMap,
    companions: tuple[SeriesMap, SeriesMap] | None = None,
    rules: int = SHIFT_RULES,
) -> pd.DataFrame:
    """``scored`` with the shift test's alarms (``ml.anomaly.shift_test.route_shifts``) on each
    route's latency p95 (with its time to first token from ``companions``), error rate and cost
    (per request; with rules 3 and 4 latency and cost on their ``GEOMETRIC_INPUTS`` and
    ``GEOMETRIC_COMPANIONS`` from ``companions``), from the raw series (NaN where idle); the
    training window is the test's history; ``rules`` are the spec's ``shift_rules``."""

    def extra(key: SeriesKey, metric: str, length: int) -> np.ndarray | None:
        other = SeriesKey(key.tenant_id, key.asset_id, key.request_model, metric)
        if companions is None or other not in companions[1]:
            return None
        joined = pd.concat(
            [companions[0].get(other, companions[1][other].iloc[:0]), companions[1][other]]
        ).to_numpy()
        return joined if len(joined) == length else None

    flags = []
    for key, values in test.items():
        if key.metric not in SHIFT_METRICS:
            continue
        counts_key = SeriesKey(key.tenant_id, key.asset_id, key.request_model, "request_count")
        if counts_key not in test:
            continue
        history = pd.concat([train[key], values]) if key in train else values
        counts = (
            pd.concat([train[counts_key], test[counts_key]])
            if counts_key in train
            else test[counts_key]
        )
        start = len(history) - len(values)
        names, beside = read_beside(key.metric, rules)
        geometric = None
        if names is not None:
            log_mean, counted = (extra(key, name, len(history)) for name in names)
            if log_mean is not None and counted is not None:
                geometric = (log_mean, counted)
        companion = extra(key, beside, len(history)) if beside is not None else None
        tested = route_shifts(
            key.metric, history.to_numpy(), counts.to_numpy(), start, companion, rules, geometric
        )
        if tested.is_shift.any():
            flags.append(
                _flag_frame(key, values.index[tested.is_shift], tested.score[tested.is_shift])
            )
    return _merge_flags(scored, flags)


def with_stop_flags(scored: pd.DataFrame, train: SeriesMap, test: SeriesMap) -> pd.DataFrame:
    """``scored`` with the count test's stops on the request counts: a stopped hour is flagged
    and judged (a zero count is otherwise an idle hour, never judged), its score the larger.

    The test's seasonal expectation reads the training window before the test window, as the
    scoring asset reads its history before the scored hours.
    """
    stops = []
    for key, values in test.items():
        if key.metric != "request_count":
            continue
        history = pd.concat([train[key], values]) if key in train else values
        tested = stopped_hours(history, len(values))
        tested = tested[tested["is_stop"]]
        if not tested.empty:
            stops.append(
                _flag_frame(key, pd.Index(tested["bucket_at"]), tested["score"].to_numpy())
            )
    return _merge_flags(scored, stops)


@dataclass(frozen=True)
class FeedbackEffect:
    """What analyst feedback on the first part of a window changes in the rest of it.

    Every false positive flagged before ``split`` is marked by an analyst; the thresholds
    ``ml.anomaly.feedback.tune_thresholds`` derives from their scores are applied to the hours
    from ``split`` on, whose false positives and incident recall are counted both ways.
    """

    marked: int
    series_tuned: int
    false_positives_before: int
    false_positives_after: int
    incidents_after_split: int
    detected_before: int
    detected_after: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "false_positives_marked": self.marked,
            "series_tuned": self.series_tuned,
            "false_positives_before": self.false_positives_before,
            "false_positives_after": self.false_positives_after,
            "incidents_after_split": self.incidents_after_split,
            "detected_before": self.detected_before,
            "detected_after": self.detected_after,
        }

    def __add__(self, other: FeedbackEffect) -> FeedbackEffect:
        return FeedbackEffect(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


def feedback_effect_on_incidents(
    scored: pd.DataFrame,
    incidents: Sequence[IncidentLabel],
    bursts: Sequence[IncidentLabel],
    split: pd.Timestamp,
    threshold: float,
    *,
    ceiling: float = 0.9,
    grace_hours: float = GRACE_HOURS,
) -> FeedbackEffect:
    """Mark the false positives before ``split``, tune thresholds, re-grade the hours after it.

    Args:
        scored: ``scored_hours`` rows of the whole window (with ``score``).
        incidents, bursts: the window's ground truth.
        split: the first hour of the part graded after feedback.
        threshold: the detector's threshold (the flags in ``scored`` were taken at it).
        ceiling, grace_hours: see ``tune_thresholds`` and ``match_incidents``.
    """
    frame = scored.reset_index(drop=True)
    frame["bucket_at"] = pd.to_datetime(frame["bucket_at"], utc=True)
    before = frame["bucket_at"] < split
    early = frame[before].reset_index(drop=True)
    early_incidents = [i for i in incidents if i.start < split]
    _, false_positive = classify_flags(early, early_incidents, bursts, grace_hours)
    marked = early[false_positive.to_numpy()]
    keys = [*SERIES_COLUMNS, "metric"]
    tuned = tune_thresholds(
        {key: list(group["score"]) for key, group in marked.groupby(keys)},
        threshold,
        ceiling=ceiling,
    )
    late = frame[~before].reset_index(drop=True)
    # Every incident explains its own flags after the split (one may straddle it); recall is
    # counted over the incidents that start after it.
    late_started = [n for n, i in enumerate(incidents) if i.start >= split]
    base_report = match_incidents(late, incidents, bursts, grace_hours)
    limits = np.array(
        [tuned.get(tuple(row), threshold) for row in late[keys].itertuples(index=False)]
    )
    # Raising a threshold only removes flags: the cooldown ran on the scores, not the decisions.
    retuned = late.assign(flagged=late["flagged"].to_numpy() & (late["score"].to_numpy() >= limits))
    tuned_report = match_incidents(retuned, incidents, bursts, grace_hours)
    return FeedbackEffect(
        marked=len(marked),
        series_tuned=len(tuned),
        false_positives_before=base_report.false_positives,
        false_positives_after=tuned_report.false_positives,
        incidents_after_split=len(late_started),
        detected_before=sum(base_report.outcomes[n].detected for n in late_started),
        detected_after=sum(tuned_report.outcomes[n].detected for n in late_started),
    )
