"""Hourly anomaly scores of every series, by the champion detector."""

import time

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from assets import groups
from assets.ml_models import DETECTOR_KEY, DETECTOR_METRICS
from assets.resources import HubResource
from assets.resources.mlflow import MlflowResource
from llmhub.ml_data import (
    EVENT_COUNT_TABLES,
    HOURLY_MART,
    detector_series,
    event_count_series,
    read_event_counts,
    read_frame,
    read_hourly_mart,
    series_label,
)
from ml.anomaly.count_test import DEFAULT_ALPHA, LOOKBACK_DAYS, stopped_hours
from ml.anomaly.fleet import SCORE_COLUMNS
from ml.anomaly.shift_test import (
    COMPANIONS,
    SHIFT_METRICS,
    SHIFT_RULES,
    read_beside,
    route_shifts,
)
from ml.features import SERIES_COLUMNS, SHIFT_INPUTS, SeriesKey, hourly_metrics, regular_series
from ml.keys import RouteKey
from ml.pyfunc import DetectorModel


def route_parts(series_id: str) -> tuple[str, str, str]:
    """Tenant, application and model of a fleet series id.

    The id is an encoded :class:`~ml.keys.RouteKey`; a detector trained before keys were
    encoded named its series ``tenant/application/model``, which only splits right when no id
    contains "/" (kept so that champion still publishes until it is retrained).
    """
    if series_id.startswith("["):
        key = RouteKey.decode(series_id)
        return key.tenant_id, key.application_id, key.model
    tenant_id, asset_id, model = series_id.split("/", 2)
    return tenant_id, asset_id, model


UPSERT_ANOMALY = """
insert into analytics.anomalies (
    bucket_at, tenant_id, asset_id, request_model, metric, observed, expected, deviation,
    score, is_anomaly, detector, model_name, model_version, mlflow_run_id, scored_at
) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())
on conflict (bucket_at, tenant_id, asset_id, request_model, metric) do update set
    observed = excluded.observed, expected = excluded.expected,
    deviation = excluded.deviation, score = excluded.score, is_anomaly = excluded.is_anomaly,
    detector = excluded.detector, model_name = excluded.model_name,
    model_version = excluded.model_version, mlflow_run_id = excluded.mlflow_run_id,
    scored_at = excluded.scored_at
"""
KEY = [*SERIES_COLUMNS, "metric", "bucket_at"]
#: The metric under which a route whose traffic stopped is published (the count test's rows).
TRAFFIC_STOP = "traffic_stop"
COUNT_TEST = "count_test"
SHIFT_TEST = "shift_test"
#: What the shift test's rows name as their model version.
SHIFT_TEST_VERSION = (
    "volume cusum k=1, latency+ttft from 10 requests h=7, cost per request h=7; "
    "error count scan 1-8 h alpha=3e-4"
)
#: The shift test's alarms are published under ``<metric>_shift`` (cost: per request).
SHIFT_SUFFIX = "_shift"
#: Test rows are written only where a test alarms; the scored hours' older ones are replaced.
DELETE_TEST_ROWS = (
    "delete from analytics.anomalies where metric = any(%s) and bucket_at >= %s and bucket_at <= %s"
)


def shift_alarms(hourly: pd.DataFrame, score_hours: int, rules: int = SHIFT_RULES) -> pd.DataFrame:
    """The shift test's alarms among the newest ``score_hours`` of every route: a sustained
    rise or fall of latency p95, error rate or cost per request that hour-by-hour scores miss
    (``ml.anomaly.shift_test``; latency with its time to first token, error rates as counts;
    with rules 3 and 4 cost and latency as geometric means per request, which ``observed`` and
    ``expected`` then are), published as ``<metric>_shift``.

    Args:
        hourly: ``fct_llm_requests_hourly`` rows (``read_hourly_mart``).
        rules: the champion spec's ``shift_rules`` (the tests it was evaluated with).
    """
    if hourly.empty:
        return pd.DataFrame(columns=SCORE_COLUMNS)
    metrics = hourly_metrics(hourly)
    wanted = ["request_count", *SHIFT_METRICS, *COMPANIONS.values(), *SHIFT_INPUTS]
    raw = {key: values for key, values in regular_series(metrics, wanted)}
    frames = []
    for key, values in raw.items():
        if key.metric not in SHIFT_METRICS:
            continue
        requests = raw[SeriesKey(key.tenant_id, key.asset_id, key.request_model, "request_count")]
        start = max(0, len(values) - score_hours)
        route = (key.tenant_id, key.asset_id, key.request_model)
        names, companion = read_beside(key.metric, rules)
        geometric = None
        if names is not None:
            log_mean, counted = (raw[SeriesKey(*route, name)].to_numpy() for name in names)
            geometric = (log_mean, counted)
        other = raw.get(SeriesKey(*route, companion)) if companion is not None else None
        tested = route_shifts(
            key.metric,
            values.to_numpy(),
            requests.to_numpy(),
            start,
            None if other is None else other.to_numpy(),
            rules,
            geometric,
        )
        if not tested.is_shift.any():
            continue
        at = values.index[start:][tested.is_shift]
        observed = values.to_numpy()[start:][tested.is_shift]
        if geometric is not None:
            observed = np.exp(geometric[0][start:][tested.is_shift])
        elif SHIFT_METRICS[key.metric][0] == "per_request":
            observed = observed / np.maximum(requests.to_numpy()[start:][tested.is_shift], 1.0)
        expected = tested.expected[tested.is_shift]
        frames.append(
            pd.DataFrame(
                {
                    "series_id": series_label(key),
                    "metric": key.metric + SHIFT_SUFFIX,
                    "bucket_at": at,
                    "observed": observed,
                    "expected": expected,
                    "deviation": observed - expected,
                    "score": tested.score[tested.is_shift],
                    "is_anomaly": True,
                }
            )
        )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SCORE_COLUMNS)


def traffic_stops(
    counts: dict[tuple[str, str], pd.Series], score_hours: int, alpha: float = DEFAULT_ALPHA
) -> pd.DataFrame:
    """The hours among the newest ``score_hours`` in which a route's traffic stopped: its count
    improbably low (``alpha``) under the seasonal floor of the same hour on the previous days
    (``ml.anomaly.count_test``). A route quiet at that hour has a low floor and is not flagged.

    Args:
        counts: per (series id, "request_count"), the gap-free hourly request counts.

    Returns:
        One row per stopped route-hour: ``series_id``, ``metric`` (``TRAFFIC_STOP``),
        ``bucket_at``, ``observed``, ``expected``, ``deviation``, ``score``, ``is_anomaly``.
    """
    frames = []
    for (series_id, _), values in counts.items():
        tested = stopped_hours(values, score_hours, alpha=alpha)
        stopped = tested[tested["is_stop"]]
        if stopped.empty:
            continue
        frames.append(
            pd.DataFrame(
                {
                    "series_id": series_id,
                    "metric": TRAFFIC_STOP,
                    "bucket_at": pd.to_datetime(stopped["bucket_at"], utc=True),
                    "observed": stopped["observed"].to_numpy(),
                    "expected": stopped["expected"].to_numpy(),
                    "deviation": (stopped["observed"] - stopped["expected"]).to_numpy(),
                    "score": stopped["score"].to_numpy(),
                    "is_anomaly": True,
                }
            )
        )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SCORE_COLUMNS)


class AnomalyScoresConfig(dg.Config):
    detector_model_name: str = Field(
        "llmhub-anomaly-detector", description="MLflow registered model (its `champion`)."
    )
    metrics: list[str] = Field(DETECTOR_METRICS, description="Series metrics scored.")
    history_hours: int = Field(
        24 * 15,
        description="Hours read per series: enough to reach back to the end of the champion's "
        "training data (held-out week + a week of weekly training), so nothing is refitted.",
    )
    score_hours: int = Field(6, description="Newest hours scored (rescoring is idempotent).")
    event_metrics: list[str] = Field(
        list(EVENT_COUNT_TABLES),
        description="Per-application hourly event counts scored against their own history "
        "(security alerts, policy violations); only a rise is an anomaly.",
    )
    stop_alpha: float = Field(
        DEFAULT_ALPHA,
        description="Count test for traffic that stops: flag a route-hour whose request count "
        "has a lower-tail Poisson probability below this under the same hour's floor.",
    )


def apply_feedback(scores: pd.DataFrame, false_positives: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Unflag the series-hours an analyst marked ``false_positive``; return how many were.

    Args:
        scores: detector output with ``KEY`` columns and ``is_anomaly``.
        false_positives: ``KEY`` columns of the false-positive verdicts.
    """
    if scores.empty or false_positives.empty:
        return scores, 0
    marked = false_positives.loc[:, KEY].assign(_fp=True)
    marked["bucket_at"] = pd.to_datetime(marked["bucket_at"], utc=True)
    merged = scores.merge(marked, on=KEY, how="left")
    hit = merged["_fp"].eq(True).to_numpy() & merged["is_anomaly"].to_numpy(dtype=bool)
    merged.loc[hit, "is_anomaly"] = False
    return merged.drop(columns="_fp"), int(hit.sum())


@dg.asset(
    key=["analytics", "anomalies"],
    group_name=groups.PUBLISH,
    kinds={"mlflow", "timescaledb"},
    deps=[HOURLY_MART, DETECTOR_KEY],
)
def anomalies(
    context: dg.AssetExecutionContext,
    config: AnomalyScoresConfig,
    hub: HubResource,
    mlflow_tracking: MlflowResource,
) -> dg.MaterializeResult:
    """Anomaly score of the newest hours of every (tenant, application, model, metric) series,
    of every application's security alerts and policy violations, and the routes that stopped.

    Grain: one row per series and hour in ``analytics.anomalies``, scored by the `champion`
    version of the detector on ``marts.fct_llm_requests_hourly``: its fitted fleet scores the
    hours since its training data ended and keeps the newest ``score_hours`` (no refitting;
    a series it does not know is fitted on the spot and counted in the metadata). Hours an
    analyst marked ``false_positive`` in ``analytics.anomaly_feedback`` are written with
    ``is_anomaly = false``.

    Security alerts and policy violations are counted per (tenant, application) and hour from
    ``raw.security_alerts`` / ``raw.policy_violations`` and scored by the same champion against
    their own history (fitted on the spot: model ``*``, metric ``security_alerts`` /
    ``policy_violations``); only a rise is flagged. A route whose request count is improbably
    low for that hour of the day (a count test against the lowest count of the same hour over
    the previous week, ``ml.anomaly.count_test``) is published as metric ``traffic_stop``,
    detector ``count_test``: a route that stopped is flagged, one quiet at that hour is not.
    When the champion's spec has ``shift_tests``, a sustained shift of a route's latency p95,
    error rate or cost per request (a volume-weighted CUSUM, ``ml.anomaly.shift_test``) is
    published as ``<metric>_shift``, detector ``shift_test``.
    Re-running replaces the rows of the hours it scores.
    """
    started = time.monotonic()
    model, version = mlflow_tracking.load_champion(config.detector_model_name)
    if not isinstance(model, DetectorModel):
        raise dg.Failure(f"{config.detector_model_name} is not a detector")
    loaded_s = time.monotonic() - started
    with hub.connect() as conn:
        hourly = read_hourly_mart(conn, config.history_hours)
        end = (
            pd.Timestamp(hourly["request_hour_at"].max()).tz_convert("UTC")
            if not hourly.empty
            else None
        )
        event_series: dict[tuple[str, str], pd.Series] = {}
        for metric in config.event_metrics if end is not None else ():
            start = end - pd.Timedelta(hours=config.history_hours - 1)
            event_series.update(
                event_count_series(read_event_counts(conn, metric, start, end), metric, end)
            )
    inputs = detector_series(hourly, config.metrics, 1)
    series = {**inputs.series, **event_series}
    if not series:
        return dg.MaterializeResult(metadata={"rows_written": 0, "series": 0})
    active = {**inputs.active, **{key: None for key in event_series}}
    # The count test reads every route's request counts, whatever metrics the detector scores.
    counts = detector_series(hourly, ["request_count"], 1).series
    labels = {series_id: route_parts(series_id) for series_id, _ in series}
    labels.update({series_id: route_parts(series_id) for series_id, _ in counts})
    # The champion's members, e.g. "robust_baseline" when the gate kept the floor.
    detector_name = "+".join(model.spec().members)
    scoring_started = time.monotonic()
    scores, stats = model.score_series(series, config.score_hours)
    stops = traffic_stops(counts, config.score_hours, config.stop_alpha)
    # The shift tests are part of the published model: a champion without them (the plain
    # robust baseline, or a version registered before they were) publishes no shift alarms.
    shifts = (
        shift_alarms(hourly, config.score_hours, model.spec().shift_rules)
        if model.spec().shift_tests
        else pd.DataFrame(columns=SCORE_COLUMNS)
    )
    scoring_s = time.monotonic() - scoring_started
    if scores.empty and stops.empty and shifts.empty:
        return dg.MaterializeResult(
            metadata={"rows_written": 0, "series_skipped": len(stats.skipped)}
        )
    scores["bucket_at"] = pd.to_datetime(scores["bucket_at"], utc=True)
    # A rate or percentile in an hour without requests is carried forward, not measured; an
    # event count is always measured, and only a rise in it is an anomaly.
    judged = np.array(
        [
            r.observed > r.expected
            if active[(r.series_id, r.metric)] is None
            else bool(active[(r.series_id, r.metric)].get(r.bucket_at, True))
            for r in scores.itertuples(index=False)
        ],
        dtype=bool,
    )
    idle_flags = int((scores["is_anomaly"].to_numpy(dtype=bool) & ~judged).sum())
    scores["is_anomaly"] = scores["is_anomaly"].to_numpy(dtype=bool) & judged
    scores = scores.assign(
        detector=detector_name,
        model_name=config.detector_model_name,
        model_version=str(version.version),
        mlflow_run_id=version.run_id,
    )
    stops = stops.assign(
        detector=COUNT_TEST,
        model_name=COUNT_TEST,
        model_version=f"poisson floor {LOOKBACK_DAYS}d alpha {config.stop_alpha:g}",
        mlflow_run_id=None,
    )
    shifts = shifts.assign(
        detector=SHIFT_TEST,
        model_name=SHIFT_TEST,
        model_version=SHIFT_TEST_VERSION,
        mlflow_run_id=None,
    )
    scores = pd.concat([s for s in (scores, stops, shifts) if not s.empty], ignore_index=True)
    keys = pd.DataFrame(
        [labels[s] for s in scores["series_id"]], columns=list(SERIES_COLUMNS), index=scores.index
    )
    scores = pd.concat([keys, scores], axis=1)
    scores["bucket_at"] = pd.to_datetime(scores["bucket_at"], utc=True)
    last_hour = max(v.index.max() for v in counts.values()) if counts else None

    with hub.connect() as conn:
        feedback = read_frame(
            conn,
            "select tenant_id, asset_id, request_model, metric, bucket_at "
            "from analytics.anomaly_feedback "
            "where verdict = 'false_positive' and bucket_at >= %s",
            (scores["bucket_at"].min().to_pydatetime(),),
        )
        scores, suppressed = apply_feedback(scores, feedback)
        rows = [
            (
                r.bucket_at.to_pydatetime(),
                r.tenant_id,
                r.asset_id,
                r.request_model,
                r.metric,
                float(r.observed),
                float(r.expected),
                float(r.deviation),
                float(r.score),
                bool(r.is_anomaly),
                r.detector,
                r.model_name,
                r.model_version,
                r.mlflow_run_id,
            )
            for r in scores.itertuples(index=False)
        ]
        with conn.transaction(), conn.cursor() as cur:
            if last_hour is not None:
                first_hour = last_hour - pd.Timedelta(hours=config.score_hours - 1)
                tests = [TRAFFIC_STOP, *(m + SHIFT_SUFFIX for m in SHIFT_METRICS)]
                cur.execute(
                    DELETE_TEST_ROWS,
                    (tests, first_hour.to_pydatetime(), last_hour.to_pydatetime()),
                )
            cur.executemany(UPSERT_ANOMALY, rows)
    flagged = int(scores["is_anomaly"].sum())
    events = scores["metric"].isin(config.event_metrics)
    context.log.info(f"{len(rows)} scores, {flagged} anomalies, {suppressed} suppressed")
    return dg.MaterializeResult(
        metadata={
            "rows_written": len(rows),
            "anomalies": flagged,
            "suppressed_false_positives": suppressed,
            "traffic_stops": len(stops),
            "shift_alarms": len(shifts),
            "event_count_series": len(event_series),
            "event_count_anomalies": int(scores.loc[events, "is_anomaly"].sum()),
            "idle_hour_flags_dropped": idle_flags,
            "series": len(stats.results),
            "series_scored_by_fitted_model": stats.reused,
            "series_fitted_at_scoring": stats.fitted,
            "series_skipped": len(stats.skipped),
            "model_load_s": round(loaded_s, 2),
            "scoring_s": round(scoring_s, 2),
            "scoring_s_per_100_series": round(100 * scoring_s / max(1, len(stats.results)), 3),
            "window": f"{scores['bucket_at'].min().isoformat()} .. "
            f"{scores['bucket_at'].max().isoformat()}",
            "model_name": config.detector_model_name,
            "model_version": str(version.version),
            "mlflow_run_id": version.run_id or "",
            "duration_s": round(time.monotonic() - started, 1),
        }
    )
