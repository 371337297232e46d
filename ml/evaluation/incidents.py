"""Incident evaluation: the detector and the forecaster on synthetic traffic with ground truth.

The synthetic generator injects four kinds of incidents (``llmhub.producers.synthetic``): a
model-wide latency regression, a cost spike, an error storm and a security-alert burst on one
application each. This module grades the anomaly detector against them and backtests the
request-rate forecaster on the same traffic. It is pure: request and alert rows in (as ingestion
writes them to ``raw.llm_requests`` / ``raw.security_alerts``), dataclasses out.

Series. ``hourly_requests`` aggregates request rows exactly as the dbt mart
``marts.fct_llm_requests_hourly`` does (``llm_request_metrics``: errors are status ``error``,
rate-limited requests apart; p95 latency and time to first token by ``percentile_cont`` over
successful requests, rounded to 3 decimals), at the (tenant, application, model, hour) grain the
models use. ``build_series`` turns that into one hourly series per route and metric of
``ROUTE_METRICS`` and one security-alert count per application (model ``"*"``).

Matching. An incident's target series are the series it hits: every application calling the
model when the tenant is None, every model of the application when the model is None; a
security burst targets the application's alert series. Its metric maps ``latency_ms`` to
``latency_p95_ms`` and keeps ``cost_usd``, ``error_rate`` and ``security_alerts``. The incident is
detected when a target series flags that metric in an hour overlapping ``[start, end)`` or within
``grace_hours`` after ``end``. In that span, flags on the target series' other metrics are
*explained* (a cost spike also moves tokens; an error storm cuts cost): neither true nor false
positives. Flags in an hour overlapping a background rate-limit burst on the burst's route are
excluded too (background realism, not graded). Every other flag in an active hour is a false
positive; flags in idle hours (see ``ml.features.fill_idle_hours``) never count.

Forecast accuracy. The published forecaster is backtested on the hourly request count from daily
origins at the end of the test window (horizon 24 h; seven origins cover every day of the week
once, so weekday/weekend transitions weigh as much as they do in reality), at two levels: per
tenant (all its routes summed) and per (tenant, application, model) route. The 12% MAPE target is
compared at the TENANT level: capacity and budget planning is per tenant. Route-level figures are
reported too, with the Poisson noise floor (the MAPE even a perfect mean forecast makes on counts
of that size), so that a high MAPE on a route carrying a few requests an hour is read correctly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from ml.anomaly.base import DetectorResult
from ml.anomaly.feedback import tune_thresholds
from ml.anomaly.fleet import DetectorSpec, Fleet
from ml.features import (
    SECURITY_ALERTS,
    SECURITY_ALERTS_MODEL,
    SERIES_COLUMNS,
    ZERO_WHEN_IDLE,
    SeriesKey,
    fill_idle_hours,
    hourly_metrics,
    judged_hours,
    regular_series,
)
from ml.forecast.backtest import rolling_origin_backtest
from ml.forecast.base import Forecaster

GRACE_HOURS = 2
_HOUR = pd.Timedelta(hours=1)

#: The per-route metrics the detector scores (plus ``SECURITY_ALERTS`` per application).
ROUTE_METRICS: tuple[str, ...] = (
    "request_count",
    "error_rate",
    "latency_p95_ms",
    "tokens",
    "cost_usd",
)
#: Ground-truth metric -> the series metric that shows it.
INCIDENT_METRICS: dict[str, str] = {
    "latency_ms": "latency_p95_ms",
    "cost_usd": "cost_usd",
    "error_rate": "error_rate",
    "security_alerts": SECURITY_ALERTS,
}
#: Columns of ``raw.llm_requests`` the hourly aggregation reads.
REQUEST_COLUMNS: tuple[str, ...] = (
    "occurred_at",
    "tenant_id",
    "asset_id",
    "request_model",
    "status",
    "input_tokens",
    "output_tokens",
    "latency_ms",
    "time_to_first_token_ms",
    "cost_usd",
)
#: Columns of ``raw.security_alerts`` the hourly alert count reads.
ALERT_COLUMNS: tuple[str, ...] = ("occurred_at", "tenant_id", "asset_id")

SeriesMap = dict[SeriesKey, pd.Series]
#: The detection step: (training series, test series) -> one result per test series. The test
#: series follow the training series in time; both are filled (no NaN).
FitScore = Callable[[SeriesMap, SeriesMap], dict[SeriesKey, DetectorResult]]


class IncidentEvaluationError(RuntimeError):
    """The evaluation cannot produce a trustworthy figure (missing results, empty data)."""


# ----------------------------------------------------------------------------------------------
# Ground truth.


@dataclass(frozen=True)
class Incident:
    """One ground-truth incident (or rate-limit burst) over ``[start, end)``, UTC.

    ``tenant_id``/``asset_id`` None: every application calling ``model``; ``model`` None: every
    model of the application.
    """

    kind: str
    tenant_id: str | None
    asset_id: str | None
    model: str | None
    metric: str
    start: pd.Timestamp
    end: pd.Timestamp

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Incident:
        """Parse one entry of ``SyntheticTraffic.ground_truth()`` (ISO-8601 times)."""
        return cls(
            kind=str(record["kind"]),
            tenant_id=record.get("tenant_id"),
            asset_id=record.get("asset_id"),
            model=record.get("model"),
            metric=str(record["metric"]),
            start=_utc(record["start"]),
            end=_utc(record["end"]),
        )

    @property
    def target_metric(self) -> str:
        """The series metric that shows this incident."""
        try:
            return INCIDENT_METRICS[self.metric]
        except KeyError:
            known = sorted(INCIDENT_METRICS)
            raise ValueError(
                f"{self.kind}: no series metric for {self.metric!r}; known: {known}"
            ) from None


def incidents_from_ground_truth(truth: Mapping[str, Any]) -> tuple[list[Incident], list[Incident]]:
    """The graded incidents and the rate-limit bursts of a ``ground_truth()`` dict."""
    incidents = [Incident.from_dict(r) for r in truth.get("incidents", [])]
    bursts = [Incident.from_dict(r) for r in truth.get("rate_limit_bursts", [])]
    return incidents, bursts


def _utc(value: object) -> pd.Timestamp:
    stamp = pd.Timestamp(value)  # type: ignore[arg-type]
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


# ----------------------------------------------------------------------------------------------
# Hourly aggregation, as the marts compute it.


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} frame lacks columns {missing}")


def hourly_requests(requests: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``raw.llm_requests`` aggregated like ``marts.fct_llm_requests_hourly``.

    The mart's grain also holds the asset version and the provider, which ``hourly_metrics``
    sums away; aggregating at (tenant, application, model, hour) directly gives the exact
    percentile where the mart's weighted merge is approximate (a re-registration mid-hour).

    Args:
        requests: columns ``REQUEST_COLUMNS``; ``status`` is ``ok``, ``error`` or
            ``rate_limited``; ``time_to_first_token_ms`` may be missing (embeddings).

    Returns:
        The mart's columns ``ml.features.REQUIRED_COLUMNS`` (``request_hour_at`` tz-aware UTC).
    """
    _require(requests, REQUEST_COLUMNS, "request")
    frame = requests.loc[:, list(REQUEST_COLUMNS)]
    hour = pd.to_datetime(frame["occurred_at"], utc=True).dt.floor("h")
    ok = frame["status"] == "ok"
    ttft = pd.to_numeric(frame["time_to_first_token_ms"], errors="coerce")
    work = pd.DataFrame(
        {
            "tenant_id": frame["tenant_id"],
            "asset_id": frame["asset_id"],
            "request_model": frame["request_model"],
            "request_hour_at": hour,
            "is_error": (frame["status"] == "error").astype("int64"),
            "input_tokens": pd.to_numeric(frame["input_tokens"]).fillna(0),
            "output_tokens": pd.to_numeric(frame["output_tokens"]).fillna(0),
            "cost_usd": pd.to_numeric(frame["cost_usd"]).fillna(0.0),
            # percentile_cont ... filter (where is_success): NaN rows are skipped by quantile.
            "latency_ok": pd.to_numeric(frame["latency_ms"]).where(ok),
            "ttft_ok": ttft.where(ok),
        }
    )
    groups = work.groupby([*SERIES_COLUMNS, "request_hour_at"], sort=True, observed=True)
    out = groups.agg(
        request_count=("is_error", "size"),
        error_count=("is_error", "sum"),
        input_tokens=("input_tokens", "sum"),
        output_tokens=("output_tokens", "sum"),
        cost_usd=("cost_usd", "sum"),
    )
    # pandas' default (linear) interpolation is percentile_cont's.
    out["latency_p95_ms"] = groups["latency_ok"].quantile(0.95).round(3)
    out["time_to_first_token_p95_ms"] = groups["ttft_ok"].quantile(0.95).round(3)
    return out.reset_index()


def hourly_security_alerts(alerts: pd.DataFrame) -> pd.DataFrame:
    """Security alerts per (tenant, application, hour) from rows of ``raw.security_alerts``.

    Returns:
        Columns ``tenant_id``, ``asset_id``, ``bucket_at`` (tz-aware UTC), ``security_alerts``.
    """
    _require(alerts, ALERT_COLUMNS, "security alert")
    bucket = pd.to_datetime(alerts["occurred_at"], utc=True).dt.floor("h")
    counts = (
        pd.DataFrame(
            {"tenant_id": alerts["tenant_id"], "asset_id": alerts["asset_id"], "bucket_at": bucket}
        )
        .groupby(["tenant_id", "asset_id", "bucket_at"], sort=True, observed=True)
        .size()
    )
    return counts.rename(SECURITY_ALERTS).astype(float).reset_index()


def build_series(
    hourly: pd.DataFrame,
    alerts: pd.DataFrame,
    start: datetime | pd.Timestamp,
    end: datetime | pd.Timestamp,
    metrics: Sequence[str] = ROUTE_METRICS,
) -> SeriesMap:
    """Every route's metric series and every application's alert series on ``[start, end)``.

    Args:
        hourly: mart-shaped rows (``hourly_requests``); rows outside the window are ignored.
        alerts: ``hourly_security_alerts`` rows; rows outside the window are ignored.
        start, end: whole UTC hours.
        metrics: the route metrics to build.

    Returns:
        Raw series on the complete hourly grid: counts and sums 0 when idle, rates and
        percentiles NaN (fill them with ``fill_idle_hours`` before scoring).
    """
    lo, hi = _utc(start), _utc(end)
    if lo.floor("h") != lo or hi.floor("h") != hi or hi <= lo:
        raise ValueError(f"window [{lo}, {hi}) must be whole, ordered UTC hours")
    grid = pd.date_range(lo, hi - _HOUR, freq="h")
    series: SeriesMap = {}
    routes = hourly_metrics(hourly) if len(hourly) else pd.DataFrame()
    if len(routes):
        routes = routes[(routes["bucket_at"] >= lo) & (routes["bucket_at"] < hi)]
    if len(routes):
        for key, values in regular_series(routes, metrics, start=lo, end=hi - _HOUR):
            series[key] = values
    apps = set()
    if len(routes):
        apps |= set(routes[["tenant_id", "asset_id"]].itertuples(index=False, name=None))
    window_alerts = alerts
    if len(alerts):
        window_alerts = alerts[(alerts["bucket_at"] >= lo) & (alerts["bucket_at"] < hi)]
        apps |= set(window_alerts[["tenant_id", "asset_id"]].itertuples(index=False, name=None))
    by_app = (
        dict(iter(window_alerts.groupby(["tenant_id", "asset_id"], sort=True)))
        if len(window_alerts)
        else {}
    )
    for tenant, asset in sorted(apps):
        group = by_app.get((tenant, asset))
        values = (
            group.set_index("bucket_at")[SECURITY_ALERTS].reindex(grid).fillna(0.0)
            if group is not None
            else pd.Series(0.0, index=grid)
        )
        values.name = SECURITY_ALERTS
        series[SeriesKey(tenant, asset, SECURITY_ALERTS_MODEL, SECURITY_ALERTS)] = values
    return series


def align_series(train: SeriesMap, test: SeriesMap) -> tuple[SeriesMap, SeriesMap]:
    """Both windows with the union of their keys: a series absent from a window is idle there."""
    if not train or not test:
        raise IncidentEvaluationError("a window holds no series (no traffic?)")
    out = []
    for own in (train, test):
        grid = next(iter(own.values())).index
        filled = dict(own)
        for key in (train.keys() | test.keys()) - own.keys():
            idle = 0.0 if key.metric in ZERO_WHEN_IDLE or key.metric == SECURITY_ALERTS else np.nan
            filled[key] = pd.Series(idle, index=grid, name=key.metric, dtype=float)
        out.append(dict(sorted(filled.items())))
    return out[0], out[1]


# ----------------------------------------------------------------------------------------------
# Detection.


def series_id(key: SeriesKey) -> str:
    """``tenant/application/model`` of a series key."""
    return f"{key.tenant_id}/{key.asset_id}/{key.request_model}"


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


def _route_mask(frame: pd.DataFrame, incident: Incident, alerts: bool) -> pd.Series:
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
    return (frame["bucket_at"] + _HOUR > start) & (frame["bucket_at"] < end)


def match_incidents(
    scored: pd.DataFrame,
    incidents: Sequence[Incident],
    bursts: Sequence[Incident] = (),
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
    incidents: Sequence[Incident],
    bursts: Sequence[Incident] = (),
    grace_hours: float = GRACE_HOURS,
) -> tuple[DetectionReport, pd.Series]:
    """``match_incidents``, and which rows of ``scored`` (index reset) are false positives."""
    _require(
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
            delay = max(0.0, (first + _HOUR - incident.start) / _HOUR)
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
    incidents: Sequence[Incident],
    bursts: Sequence[Incident] = (),
    fit_score: FitScore | None = None,
    grace_hours: float = GRACE_HOURS,
    feedback_split: pd.Timestamp | None = None,
    threshold: float = 0.5,
) -> DetectionReport | tuple[DetectionReport, FeedbackEffect]:
    """Fit on the clean window, score the incident window, match the flags to the ground truth.

    With ``feedback_split``, also the ``feedback_effect`` of marking the false positives before
    it (``threshold``: the detector's), returned with the report.

    Args:
        train: raw series of the training window (``build_series``).
        test: raw series of the test window that follows it, same keys (``align_series``).
        incidents: the graded incidents of the test window.
        bursts: the test window's rate-limit bursts.
        fit_score: the detection step (default ``fleet_fit_score()``, the published
            ensemble per series).
        grace_hours: see ``match_incidents``.

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
    report = match_incidents(scored, incidents, bursts, grace_hours)
    if feedback_split is None:
        return report
    return report, feedback_effect(
        scored, incidents, bursts, feedback_split, threshold, grace_hours=grace_hours
    )


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


def feedback_effect(
    scored: pd.DataFrame,
    incidents: Sequence[Incident],
    bursts: Sequence[Incident],
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


# ----------------------------------------------------------------------------------------------
# Forecast accuracy.


def request_rate_series(
    train: SeriesMap, test: SeriesMap
) -> tuple[dict[str, pd.Series], dict[str, pd.Series]]:
    """Hourly request counts over both windows: per tenant (routes summed) and per route.

    Returns:
        ``(tenants, routes)`` keyed by tenant id and by ``tenant/application/model``.
    """
    routes: dict[str, pd.Series] = {}
    for key in sorted(k for k in test if k.metric == "request_count"):
        both = pd.concat([train[key], test[key]]).astype(float)
        both.index = pd.DatetimeIndex(both.index, freq="h")
        routes[series_id(key)] = both
    tenants: dict[str, pd.Series] = {}
    for name, values in routes.items():
        tenant = name.split("/", 1)[0]
        tenants[tenant] = tenants[tenant] + values if tenant in tenants else values.copy()
    return tenants, routes


@dataclass(frozen=True)
class ForecastScore:
    """Backtest of one request-count series (folds averaged; percentages).

    ``mape`` is ``nan`` when some scored hour has 0 requests. ``poisson_floor_mape`` is the MAPE
    a perfect mean forecast would still make on Poisson counts of this size,
    ``100 * mean(sqrt(2 / (pi * y)))`` over the scored hours with ``y > 0`` (normal
    approximation of ``E|y - lambda| / lambda`` with ``lambda ~ y``). ``fold_weekdays`` names the
    UTC weekday of each fold's first forecast hour, ``fold_mape`` its MAPE.
    """

    level: str
    series_id: str
    mape: float
    smape: float
    mase: float
    abs_error: float
    actual_total: float
    mean_count: float
    poisson_floor_mape: float
    fold_weekdays: tuple[str, ...]
    fold_mape: tuple[float, ...]


def poisson_floor_mape(counts: np.ndarray) -> float:
    """Approximate MAPE (percent) of a perfect mean forecast of Poisson counts ``counts``."""
    positive = np.asarray(counts, dtype=float)
    positive = positive[positive > 0]
    if positive.size == 0:
        return math.nan
    return float(100.0 * np.mean(np.sqrt(2.0 / (math.pi * positive))))


def backtest_request_rate(
    series: Mapping[str, pd.Series],
    level: str,
    forecaster: Forecaster,
    test_hours: int,
    horizon: int = 24,
    season: int = 24,
    n_origins: int = 7,
    step: int = 24,
    on_series: Callable[[str], None] | None = None,
) -> list[ForecastScore]:
    """Rolling-origin backtest of ``forecaster``, origins ``step`` hours apart, the last one
    ``horizon`` hours before the end; every forecast lies in the last ``test_hours`` points.

    A forecaster's error propagates: a failed forecast fails the evaluation.

    Raises:
        ValueError: the origins would reach back before the test window.
    """
    if n_origins < 1 or horizon < 1 or step < 1:
        raise ValueError("n_origins, horizon and step must be >= 1")
    if (n_origins - 1) * step + horizon > test_hours:
        raise ValueError(
            f"{n_origins} origins {step} h apart with horizon {horizon} do not fit in the "
            f"{test_hours} test hours"
        )
    scores = []
    for name, values in series.items():
        result = rolling_origin_backtest(forecaster, values, horizon, season, n_origins, step)
        actual = np.concatenate([fold.actual for fold in result.folds])
        point = np.concatenate([fold.forecast.point for fold in result.folds])
        scores.append(
            ForecastScore(
                level=level,
                series_id=name,
                mape=result.mape,
                smape=result.smape,
                mase=result.mase,
                abs_error=float(np.abs(actual - point).sum()),
                actual_total=float(actual.sum()),
                mean_count=float(actual.mean()),
                poisson_floor_mape=poisson_floor_mape(actual),
                fold_weekdays=tuple(
                    (pd.Timestamp(fold.origin) + _HOUR).day_name()[:3] for fold in result.folds
                ),
                fold_mape=tuple(fold.scores.mape for fold in result.folds),
            )
        )
        if on_series is not None:
            on_series(name)
    return scores


def _finite(values: Iterable[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def _mean(values: Iterable[float]) -> float:
    kept = _finite(values)
    return float(np.mean(kept)) if kept else math.nan


def _median(values: Iterable[float]) -> float:
    kept = _finite(values)
    return float(np.median(kept)) if kept else math.nan


def summarise_forecasts(scores: Sequence[ForecastScore]) -> dict[str, Any]:
    """Tenant- and route-level accuracy (percent) over the backtested series.

    Means and medians are over series where the figure is defined (``*_series_mape_defined``
    counts them); WAPE (``sum |error| / sum actual``) is volume-weighted over every series.
    """
    summary: dict[str, Any] = {}
    for level in ("tenant", "route"):
        chosen = [s for s in scores if s.level == level]
        total = sum(s.actual_total for s in chosen)
        wape = 100.0 * sum(s.abs_error for s in chosen) / total if total > 0 else math.nan
        prefix = level
        summary[f"{prefix}_series"] = len(chosen)
        summary[f"{prefix}_series_mape_defined"] = len(_finite(s.mape for s in chosen))
        if level == "tenant":
            summary["tenant_mape"] = _mean(s.mape for s in chosen)
            summary["tenant_mape_max"] = max(_finite(s.mape for s in chosen), default=math.nan)
            summary["tenant_smape"] = _mean(s.smape for s in chosen)
            summary["tenant_mase"] = _mean(s.mase for s in chosen)
        else:
            summary["route_mape_mean"] = _mean(s.mape for s in chosen)
            summary["route_mape_median"] = _median(s.mape for s in chosen)
            summary["route_smape_mean"] = _mean(s.smape for s in chosen)
            summary["route_mase_mean"] = _mean(s.mase for s in chosen)
        summary[f"{prefix}_wape"] = wape
        summary[f"poisson_floor_{prefix}_mape"] = _mean(s.poisson_floor_mape for s in chosen)
        summary[f"poisson_floor_{prefix}_mape_median"] = _median(
            s.poisson_floor_mape for s in chosen
        )
        summary[f"{prefix}_mean_requests_per_hour_median"] = _median(s.mean_count for s in chosen)
    summary["tenant_mape_by_weekday"] = _by_weekday([s for s in scores if s.level == "tenant"])
    return summary


def _by_weekday(scores: Sequence[ForecastScore]) -> dict[str, float]:
    """Mean fold MAPE per weekday of the forecast day (where defined), Monday first."""
    folds: dict[str, list[float]] = {}
    for score in scores:
        for day, value in zip(score.fold_weekdays, score.fold_mape, strict=True):
            folds.setdefault(day, []).append(value)
    order = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    return {day: _mean(folds[day]) for day in order if day in folds}
