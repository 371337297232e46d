"""Hourly anomaly scores of every series, by the champion detector."""

import time

import dagster as dg
import pandas as pd
from pydantic import Field

from assets.ml_models import DETECTOR_KEY
from assets.ml_models.data import HOURLY_MART, read_frame, read_hourly_mart
from ml.features import SERIES_COLUMNS, hourly_metrics, regular_series
from orchestration.resources import HubResource
from orchestration.resources.mlflow import MlflowResource

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
    # Counts and sums only: rates and percentiles are undefined in idle hours, and the
    # detectors need gap-free values.
    metrics: list[str] = Field(
        ["request_count", "tokens", "cost_usd"], description="Series metrics scored."
    )
    history_hours: int = Field(24 * 14, description="Hours each series is fitted on + scored.")
    score_hours: int = Field(6, description="Newest hours scored (rescoring is idempotent).")
    min_history_hours: int = Field(48, description="Series with fewer active hours are skipped.")


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
    hit = merged["_fp"].fillna(False).astype(bool).to_numpy() & merged["is_anomaly"].to_numpy()
    merged.loc[hit, "is_anomaly"] = False
    return merged.drop(columns="_fp"), int(hit.sum())


@dg.asset(
    key=["analytics", "anomalies"],
    group_name="publish",
    kinds={"mlflow", "timescaledb"},
    deps=[HOURLY_MART, DETECTOR_KEY],
)
def anomaly_scores(
    context: dg.AssetExecutionContext,
    config: AnomalyScoresConfig,
    hub: HubResource,
    mlflow_tracking: MlflowResource,
) -> dg.MaterializeResult:
    """Anomaly score of the newest hours of every (tenant, application, model, metric) series.

    Grain: one row per series and hour in ``analytics.anomalies``, scored by the `champion`
    version of the detector on ``marts.fct_llm_requests_hourly``. Hours an analyst marked
    ``false_positive`` in ``analytics.anomaly_feedback`` are written with ``is_anomaly = false``.
    Re-running replaces the rows of the hours it scores.
    """
    started = time.monotonic()
    model, version = mlflow_tracking.load_champion(config.detector_model_name)
    with hub.connect() as conn:
        hourly = read_hourly_mart(conn, config.history_hours)
    if hourly.empty:
        return dg.MaterializeResult(metadata={"rows_written": 0, "series": 0})
    metrics = hourly_metrics(hourly)
    active = metrics.groupby(list(SERIES_COLUMNS))["bucket_at"].count()
    labels: dict[str, tuple[str, str, str]] = {}
    frames, skipped = [], 0
    for key, values in regular_series(metrics, config.metrics):
        if active[(key.tenant_id, key.asset_id, key.request_model)] < config.min_history_hours:
            skipped += 1
            continue
        label = f"{key.tenant_id}/{key.asset_id}/{key.request_model}"
        labels[label] = (key.tenant_id, key.asset_id, key.request_model)
        frames.append(
            pd.DataFrame(
                {
                    "series_id": label,
                    "metric": key.metric,
                    "bucket_at": values.index.tz_convert(None),
                    "value": values.to_numpy(dtype=float),
                }
            )
        )
    if not frames:
        return dg.MaterializeResult(metadata={"rows_written": 0, "series_skipped": skipped})
    scores = model.predict(
        pd.concat(frames, ignore_index=True), params={"score_hours": config.score_hours}
    )
    keys = pd.DataFrame(
        [labels[s] for s in scores["series_id"]], columns=list(SERIES_COLUMNS), index=scores.index
    )
    scores = pd.concat([keys, scores], axis=1)
    scores["bucket_at"] = pd.to_datetime(scores["bucket_at"], utc=True)

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
                "ensemble",
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
            "series": len(labels),
            "series_skipped": skipped,
            "window": f"{scores['bucket_at'].min().isoformat()} .. "
            f"{scores['bucket_at'].max().isoformat()}",
            "model_name": config.detector_model_name,
            "model_version": str(version.version),
            "mlflow_run_id": version.run_id or "",
            "duration_s": round(time.monotonic() - started, 1),
        }
    )
