"""The correlation evaluation through the real pipeline: Kafka -> ingestion -> dbt -> detector ->
incidents, one fresh database and topic prefix per seed.

Per seed (``run_seed``):

1. ``generate``: the scenario world of ``llmhub.producers.scenarios`` (at a fraction of its
   default volume: every request becomes a message);
2. ``database``: a fresh database, created and migrated as the integration tests do, and the
   contract topics under a fresh prefix on the running broker;
3. ``produce``: ``scenario_messages`` sent with the project's producer (``producers.sink``);
4. ``ingest``: the ingester (``llmhub.ingest.engine.Ingestor``, what ``llmhub ingest
   --until-caught-up`` runs) until caught up;
5. ``dbt``: the Dagster ``transform_hourly_job`` of the code location (``dbt build`` of the
   request marts with their dbt tests and Great Expectations checks), as a backfill of the
   scenario window, with its ``hub`` resource aimed at the seed's database;
6. ``detect``: the hourly series the incidents asset reads from the mart, scored by the chosen
   detector (the fleet of ``ml.anomaly`` fitted on the clean days, as ``--detector fleet`` of
   the frame mode) into ``analytics.anomalies``; the scenario's request forecasts into
   ``analytics.forecasts`` (the forecaster is not re-run);
7. ``correlate``: what the incidents asset does: ``store.read_inputs``, ``correlate``,
   ``store.upsert_incidents``;
8. ``grade``: ``ml.evaluation.correlation.evaluate_seed`` on the pipeline's incidents, and on
   the frame mode of the same world and detector, for comparison.

The database is dropped and the topics deleted afterwards, whatever happened.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from llmhub.config import Settings, with_database
from llmhub.producers.sink import Message

log = logging.getLogger(__name__)

STAGES = ("generate", "database", "produce", "ingest", "dbt", "detect", "correlate", "grade")
#: Traffic of the pipeline mode: an eighth of the frame mode's (40,000 requests an hour).
PIPELINE_REQUESTS_PER_HOUR = 5_000
DBT_JOB = "transform_hourly_job"
FORECAST_MODEL = "scenario_seasonal_naive"
INSERT_ANOMALY = """
insert into analytics.anomalies (
    bucket_at, tenant_id, asset_id, request_model, metric, observed, expected, deviation,
    score, is_anomaly, detector, model_name, model_version
) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""
INSERT_FORECAST = """
insert into analytics.forecasts (
    series_key, tenant_id, asset_id, metric, grain, target_at, forecast_made_at, yhat,
    yhat_lower, yhat_upper, model_name, model_version
) values (%s, %s, %s, %s, 'hour', %s, %s, %s, %s, %s, %s, '1')
"""

#: ``stage, done, total`` (total None when unknown) -> None.
Progress = Callable[[str, int, int | None], None]


def _quiet(stage: str, done: int, total: int | None) -> None:
    return None


@dataclass
class PipelineSeed:
    """One seed through the pipeline: both gradings and what each stage did."""

    seed: int
    pipeline: Any  # ml.evaluation.correlation.SeedResult
    frames: Any  # the same world and detector on the generated frames
    stage_seconds: dict[str, float] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)


@contextmanager
def fresh_database(settings: Settings, name: str) -> Iterator[Settings]:
    """Database ``name`` created empty and migrated (dropped first if a run left it), dropped
    afterwards; yields ``settings`` aimed at it."""
    from llmhub.db import migrate

    admin_url = with_database(settings.database_url, "postgres")
    drop = sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(drop)
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        aimed = replace(settings, database_url=with_database(settings.database_url, name))
        migrate(aimed)
        yield aimed
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(drop)


@contextmanager
def fresh_topics(settings: Settings) -> Iterator[Settings]:
    """The contract topics under a new prefix (and a new consumer group); deleted afterwards."""
    from kafka.admin import KafkaAdminClient

    from llmhub.contract.topics import TOPICS
    from llmhub.stack.broker import ensure_topics

    run = uuid.uuid4().hex[:8]
    aimed = replace(settings, topic_prefix=f"eval{run}.", consumer_group=f"llmhub-eval-{run}")
    ensure_topics(aimed.kafka_bootstrap, aimed.topic_prefix)
    try:
        yield aimed
    finally:
        admin = KafkaAdminClient(bootstrap_servers=aimed.kafka_bootstrap)
        try:
            admin.delete_topics([aimed.topic(spec.topic) for spec in TOPICS])
        except Exception as exc:  # the prefix is unique: a topic left behind is only clutter
            log.warning("could not delete the evaluation topics: %s", exc)
        finally:
            admin.close()


def produce(settings: Settings, messages: Iterable[Message], progress: Progress) -> int:
    """Send ``messages`` (contract topic names) under the settings' prefix with the project's
    producer; returns how many the broker acknowledged."""
    from llmhub.producers.sink import make_producer, send_all

    counted = 0

    def prefixed() -> Iterator[Message]:
        nonlocal counted
        for message in messages:
            counted += 1
            if counted % 20_000 == 0:
                progress("produce", counted, None)
            yield replace(message, topic=settings.topic(message.topic))

    # kafka-python warns whenever encoding (in this thread) delays its event loop: noise here.
    kafka_log = logging.getLogger("kafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.ERROR)
    producer = make_producer(settings.kafka_bootstrap)
    try:
        return send_all(producer, prefixed())
    finally:
        producer.close()
        kafka_log.setLevel(level)


def ingest(settings: Settings, total: int, progress: Progress) -> Any:
    """The ingester until caught up (``llmhub ingest --until-caught-up``, in-process decoding)."""
    from llmhub.ingest.engine import Ingestor

    def on_batch(report: Any) -> None:
        progress("ingest", report.messages, total)

    return Ingestor(settings).run(until_caught_up=True, on_batch=on_batch)


def build_marts(settings: Settings, start: pd.Timestamp, end: pd.Timestamp, log_path: Path) -> None:
    """The code location's ``transform_hourly_job`` as a backfill of ``[start, end)``, its
    ``hub`` resource aimed at ``settings``; dbt's and Dagster's output go to ``log_path``."""
    import dagster as dg

    from llmhub.demo import QUIET, captured_output, load_definitions

    with captured_output(log_path):
        defs = load_definitions()
        hub = defs.resources["hub"]
        aimed = type(hub)(
            database_url=settings.database_url,
            kafka_bootstrap=settings.kafka_bootstrap,
            topic_prefix=settings.topic_prefix,
            consumer_group=settings.consumer_group,
        )
        backfill = {
            "backfill_start": start.isoformat(),
            "backfill_end": (end + pd.Timedelta(hours=1)).isoformat(),
        }
        result = defs.resolve_job_def(DBT_JOB).execute_in_process(
            instance=dg.DagsterInstance.ephemeral(),
            run_config={**QUIET, "ops": {"dbt_hourly_models": {"config": backfill}}},
            resources={"hub": aimed},
            raise_on_error=False,
        )
    if not result.success:
        raise RuntimeError(f"{DBT_JOB} failed; see {log_path}")


def series_fidelity(mart: pd.DataFrame, generated: pd.DataFrame) -> dict[str, Any]:
    """How the mart's hourly series (built from the ingested requests) compare with the
    generated ones: route-hours missing on either side, and per metric the median and largest
    relative difference (the request counts must match exactly)."""
    keys = ["tenant_id", "asset_id", "request_model", "bucket_at"]
    mart, generated = (
        f.assign(bucket_at=pd.to_datetime(f["bucket_at"], utc=True).astype("datetime64[ns, UTC]"))
        for f in (mart, generated)
    )
    joined = generated.merge(mart, on=keys, how="outer", suffixes=("_gen", "_mart"), indicator=True)
    out: dict[str, Any] = {
        "route_hours_only_generated": int((joined["_merge"] == "left_only").sum()),
        "route_hours_only_in_mart": int((joined["_merge"] == "right_only").sum()),
    }
    both = joined[joined["_merge"] == "both"]
    for metric in ("request_count", "error_rate", "tokens", "cost_usd", "latency_p95_ms"):
        gen = both[f"{metric}_gen"].astype(float).to_numpy()
        mart_values = both[f"{metric}_mart"].astype(float).to_numpy()
        scale = np.maximum(np.abs(gen), 1e-9 if metric != "error_rate" else 1e-2)
        diff = np.abs(mart_values - gen) / scale
        out[metric] = {
            "median_rel": round(float(np.median(diff)), 5),
            "max_rel": round(float(diff.max()), 5),
        }
    return out


def detect(series: pd.DataFrame, since: pd.Timestamp, detector: str) -> pd.DataFrame:
    """Scores (``analytics.anomalies`` shape) of the hours from ``since`` by ``detector``."""
    from llmhub.producers.scenarios import detect_anomalies
    from ml.evaluation.correlation import fleet_anomalies

    if detector == "fleet":
        return fleet_anomalies(series, since)
    return detect_anomalies(series, since)


def write_anomalies(conn: psycopg.Connection, scores: pd.DataFrame, detector: str) -> int:
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
            float(min(max(r.score, 0.0), 1.0)),
            bool(r.is_anomaly),
            detector,
            "eval-correlation",
            detector,
        )
        for r in scores.itertuples(index=False)
    ]
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(INSERT_ANOMALY, rows)
    return len(rows)


def write_forecasts(conn: psycopg.Connection, forecasts: pd.DataFrame, made_at: Any) -> int:
    rows = [
        (
            f"{r.tenant_id}/{r.asset_id}/{r.request_model}",
            r.tenant_id,
            r.asset_id,
            r.metric,
            r.target_at.to_pydatetime(),
            made_at,
            float(r.yhat),
            float(r.yhat_lower),
            float(r.yhat_upper),
            FORECAST_MODEL,
        )
        for r in forecasts.itertuples(index=False)
    ]
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(INSERT_FORECAST, rows)
    return len(rows)


def run_seed(
    settings: Settings,
    seed: int,
    database: str,
    *,
    days: int = 8,
    requests_per_hour: float = PIPELINE_REQUESTS_PER_HOUR,
    detector: str = "fleet",
    workdir: Path,
    progress: Progress = _quiet,
) -> PipelineSeed:
    """One seed through the pipeline (see the module docstring); raises if a stage fails."""
    from llmhub.incidents import store
    from llmhub.producers.scenarios import generate_scenarios, scenario_messages
    from ml.evaluation.correlation import evaluate_seed

    seconds: dict[str, float] = {}
    counts: dict[str, Any] = {}

    @contextmanager
    def stage(name: str) -> Iterator[None]:
        progress(name, 0, None)
        started = time.monotonic()
        yield
        seconds[name] = round(time.monotonic() - started, 1)

    with stage("generate"):
        data = generate_scenarios(seed, days=days, requests_per_hour=requests_per_hour)
        truth = data.ground_truth()["scenarios"]
    since = data.scenario_start
    with ExitStack() as stack:
        with stage("database"):
            db = stack.enter_context(fresh_database(settings, database))
            aimed = stack.enter_context(fresh_topics(db))
        with stage("produce"):
            counts["messages"] = produce(aimed, scenario_messages(data), progress)
        with stage("ingest"):
            report = ingest(aimed, counts["messages"], progress)
            counts["rows_written"] = dict(report.rows_written)
            counts["dead_lettered"] = dict(report.dead_lettered)
        with stage("dbt"):
            build_marts(aimed, data.start, data.end, workdir / f"dbt-seed-{seed}.log")
        with stage("detect"), psycopg.connect(aimed.database_url, autocommit=True) as conn:
            series = store.read_inputs(conn, since.to_pydatetime()).series
            counts["mart_series_hours"] = len(series)
            counts["mart_vs_generated"] = series_fidelity(series, data.series)
            scores = detect(series, since, detector)
            counts["anomalies_flagged"] = int(scores["is_anomaly"].sum())
            write_anomalies(conn, scores, detector)
            write_forecasts(conn, data.forecasts, since.to_pydatetime())
        with stage("correlate"), psycopg.connect(aimed.database_url, autocommit=True) as conn:
            # What the incidents asset does: its inputs, the engine, the upsert.
            inputs = store.read_inputs(conn, since.to_pydatetime())
            result = store.correlate_inputs(inputs, data.end + pd.Timedelta(hours=1))
            upserted = store.upsert_incidents(conn, result.incidents, since.to_pydatetime())
            counts["incidents"] = upserted.opened + upserted.updated
            counts["events_read"] = len(inputs.events)
    with stage("grade"):
        pipeline = evaluate_seed(
            seed,
            inputs.anomalies,
            inputs.events,
            inputs.series,
            inputs.forecasts,
            inputs.providers,
            truth,
            result=result,
        )
        frames = evaluate_seed(
            seed,
            detect(data.series, since, detector),
            data.events,
            data.series,
            data.forecasts,
            data.providers,
            truth,
        )
    return PipelineSeed(seed, pipeline, frames, seconds, counts)
