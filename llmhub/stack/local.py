"""``llmhub stack up|down|status``: the local services the hub and its tests need."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from llmhub.config import Settings, load_api_settings, mlflow_tracking_uri, prometheus_url, redact
from llmhub.db import connect, migrate
from llmhub.stack.api_server import ApiStack
from llmhub.stack.broker import BrokerStack, ensure_topics
from llmhub.stack.mlflow_server import MlflowStack
from llmhub.stack.prometheus import PrometheusStack
from llmhub.stack.timescale import TimescaleStack

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StackReport:
    database: str
    kafka: str
    mlflow: str
    notes: list[str]
    prometheus: str = ""
    api: str = ""


def is_loopback(host: str) -> bool:
    """Services on this machine are the stack's to start; anything else is the user's."""
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def _services(settings: Settings) -> tuple[TimescaleStack, BrokerStack, MlflowStack]:
    return (
        TimescaleStack.for_url(settings.stack_dir, settings.database_url),
        BrokerStack.for_bootstrap(settings.stack_dir, settings.kafka_bootstrap),
        MlflowStack.for_settings(settings.stack_dir, settings.database_url, mlflow_tracking_uri()),
    )


def up(settings: Settings) -> StackReport:
    """Start what is local, migrate the schema and create the topics (idempotent)."""
    timescale, broker, mlflow = _services(settings)
    notes: list[str] = []
    if not is_loopback(timescale.host):
        notes.append(f"database on {timescale.host}: using it, not starting TimescaleDB")
    elif timescale.is_running():
        notes.append(f"a server already listens on port {timescale.port}: using it")
    else:
        timescale.start()
    migrate(settings)
    if not is_loopback(broker.host):
        notes.append(f"Kafka on {broker.host}: using it, not starting a broker")
    else:
        if broker.start():
            # The dev broker keeps topics in memory: a new one starts with empty logs, so stored
            # offsets from its predecessor would point past their ends.
            with connect(settings, autocommit=True) as conn:
                reset = conn.execute("delete from raw.kafka_offsets").rowcount
            if reset:
                notes.append(f"new in-memory broker: cleared {reset} stored offsets")
    ensure_topics(
        settings.kafka_bootstrap,
        settings.topic_prefix,
        replication_factor=settings.topic_replication,
    )
    if not is_loopback(mlflow.host):
        notes.append(f"MLflow on {mlflow.host}: using it, not starting a tracking server")
    else:
        mlflow.start()
    prometheus = _prometheus(settings)
    if not is_loopback(prometheus.host):
        notes.append(f"Prometheus on {prometheus.host}: using it, not starting one")
    else:
        prometheus.start()
    # After the migration: the API connects as role llmhub_api, which migration 0010 creates.
    api = ApiStack.for_settings(settings.stack_dir, load_api_settings(settings))
    api.start()
    return StackReport(
        redact(settings.database_url),
        settings.kafka_bootstrap,
        mlflow.url,
        notes,
        prometheus.url,
        api.url,
    )


def _prometheus(settings: Settings) -> PrometheusStack:
    return PrometheusStack.for_settings(settings.stack_dir, settings.metrics_dir, prometheus_url())


def down(settings: Settings) -> None:
    timescale, broker, mlflow = _services(settings)
    ApiStack.for_settings(settings.stack_dir, load_api_settings(settings)).stop()
    prometheus = _prometheus(settings)
    if is_loopback(prometheus.host):
        prometheus.stop()
    if is_loopback(mlflow.host):
        mlflow.stop()
    if is_loopback(broker.host):
        broker.stop()
    if is_loopback(timescale.host):
        timescale.stop()
