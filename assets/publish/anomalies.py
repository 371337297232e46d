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
from llmhub.ml_data import HOURLY_MART, detector_series, read_frame, read_hourly_mart
from ml.features import SERIES_COLUMNS
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
    """Anomaly score of the newest hours of every (tenant, application, model, metric) series.

    Grain: one row per series and hour in ``analytics.anomalies``, scored by the `champion`
    version of the detector on ``marts.fct_llm_requests_hourly``: its fitted fleet scores the
    hours since its training data ended and keeps the newest ``score_hours`` (no refitting;
    a series it does not know is fitted on the spot and counted in the metadata). Hours an
    analyst marked ``false_positive`` in ``analytics.anomaly_feedback`` are written with
    ``is_anomaly = false``.
    Re-running replaces the rows of the hours it scores.
    """
    started = time.monotonic()
    model, version = mlflow_tracking.load_champion(config.detector_model_name)
    if not isinstance(model, DetectorModel):
        raise dg.Failure(f"{config.detector_model_name} is not a detector")
    loaded_s = time.monotonic() - started
    with hub.connect() as conn:
        hourly = read_hourly_mart(conn, config.history_hours)
    inputs = detector_series(hourly, config.metrics, 1)
    series = inputs.series
    if not series:
        return dg.MaterializeResult(metadata={"rows_written": 0, "series": 0})
    labels = {series_id: route_parts(series_id) for series_id, _ in series}
    # The champion's members, e.g. "robust_baseline" when the gate kept the floor.
    detector_name = "+".join(model.spec().members)
    scoring_started = time.monotonic()
    scores, stats = model.score_series(series, config.score_hours)
    scoring_s = time.monotonic() - scoring_started
    if scores.empty:
        return dg.MaterializeResult(
            metadata={"rows_written": 0, "series_skipped": len(stats.skipped)}
        )
    keys = pd.DataFrame(
        [labels[s] for s in scores["series_id"]], columns=list(SERIES_COLUMNS), index=scores.index
    )
    scores = pd.concat([keys, scores], axis=1)
    scores["bucket_at"] = pd.to_datetime(scores["bucket_at"], utc=True)
    # A rate or percentile in an hour without requests is carried forward, not measured.
    active = np.array(
        [
            bool(inputs.active[(r.series_id, r.metric)].get(r.bucket_at, True))
            for r in scores.itertuples(index=False)
        ],
        dtype=bool,
    )
    idle_flags = int((scores["is_anomaly"].to_numpy(dtype=bool) & ~active).sum())
    scores["is_anomaly"] = scores["is_anomaly"].to_numpy(dtype=bool) & active

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
                detector_name,
                config.detector_model_name,
                str(version.version),
                version.run_id,
            )
            for r in scores.itertuples(index=False)
        ]
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(UPSERT_ANOMALY, rows)
    flagged = int(scores["is_anomaly"].sum())
    context.log.info(f"{len(rows)} scores, {flagged} anomalies, {suppressed} suppressed")
    return dg.MaterializeResult(
        metadata={
            "rows_written": len(rows),
            "anomalies": flagged,
            "suppressed_false_positives": suppressed,
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
