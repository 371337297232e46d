"""Health and backlog of the hub: what ``llmhub status`` and the Dagster checks report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
from kafka import KafkaConsumer, TopicPartition
from psycopg import sql

from llmhub.config import Settings, mlflow_tracking_uri, redact
from llmhub.contract.topics import RAW_TABLES, TOPICS
from llmhub.db import connect
from llmhub.ingest.writer import stored_offsets
from llmhub.stack.mlflow_server import MlflowStack


@dataclass
class HubStatus:
    database: dict[str, Any] = field(default_factory=dict)
    kafka: dict[str, Any] = field(default_factory=dict)
    mlflow: dict[str, Any] = field(default_factory=dict)
    raw_rows: dict[str, int] = field(default_factory=dict)
    dead_letter_rows: int = 0
    dead_letter_by_class: dict[str, int] = field(default_factory=dict)
    lag: dict[str, int] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return bool(self.database.get("ok")) and bool(self.kafka.get("ok"))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "healthy": self.healthy}


def partition_lag(
    conn: psycopg.Connection, consumer: KafkaConsumer, settings: Settings
) -> dict[str, int]:
    """End offset minus stored next offset, per ``topic[partition]``."""
    topics = [settings.topic(spec.topic) for spec in TOPICS]
    tps = [
        TopicPartition(topic, p)
        for topic in topics
        for p in sorted(consumer.partitions_for_topic(topic) or ())
    ]
    if not tps:
        return {}
    end = consumer.end_offsets(tps)
    begin = consumer.beginning_offsets(tps)
    stored = stored_offsets(conn, settings.consumer_group, [(tp.topic, tp.partition) for tp in tps])
    return {
        f"{tp.topic}[{tp.partition}]": max(
            0, end[tp] - stored.get((tp.topic, tp.partition), begin[tp])
        )
        for tp in tps
    }


def raw_row_counts(conn: psycopg.Connection) -> dict[str, int]:
    counts = {}
    for table in RAW_TABLES:
        row = conn.execute(
            sql.SQL("select count(*) from {}").format(sql.Identifier("raw", table))
        ).fetchone()
        counts[table] = int(row[0]) if row else 0
    return counts


def collect_status(settings: Settings) -> HubStatus:
    """Probe the database and the broker; never raises for an unreachable service."""
    status = HubStatus()
    conn: psycopg.Connection | None = None
    try:
        conn = connect(settings, autocommit=True)
        version = conn.execute(
            "select extversion from pg_extension where extname = 'timescaledb'"
        ).fetchone()
        status.database = {
            "ok": True,
            "url": redact(settings.database_url),
            "server_version": conn.info.server_version,
            "timescaledb": version[0] if version else None,
        }
        status.raw_rows = raw_row_counts(conn)
        for error_class, count in conn.execute(
            "select error_class, count(*) from raw.dead_letter group by 1 order by 1"
        ):
            status.dead_letter_by_class[error_class] = int(count)
        status.dead_letter_rows = sum(status.dead_letter_by_class.values())
    except psycopg.Error as exc:
        status.database = {"ok": False, "url": redact(settings.database_url), "error": str(exc)}
    server = MlflowStack.for_settings(
        settings.stack_dir, settings.database_url, mlflow_tracking_uri()
    )
    status.mlflow = {"ok": server.is_running(), "tracking_uri": mlflow_tracking_uri()}
    consumer: KafkaConsumer | None = None
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap.split(","),
            client_id="llmhub-status",
            enable_auto_commit=False,
            request_timeout_ms=5000,
        )
        status.kafka = {"ok": True, "bootstrap": settings.kafka_bootstrap}
        if conn is not None and status.database.get("ok"):
            status.lag = partition_lag(conn, consumer, settings)
    except Exception as exc:  # kafka-python raises several unrelated types for "unreachable"
        status.kafka = {"ok": False, "bootstrap": settings.kafka_bootstrap, "error": str(exc)}
    finally:
        if consumer is not None:
            consumer.close()
        if conn is not None:
            conn.close()
    return status
