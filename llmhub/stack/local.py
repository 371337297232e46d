"""``llmhub stack up|down|status``: the local services the hub and its tests need."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from llmhub.config import Settings, mlflow_tracking_uri, redact
from llmhub.db import connect, migrate
from llmhub.stack.broker import BrokerStack, ensure_topics
from llmhub.stack.mlflow_server import MlflowStack
from llmhub.stack.timescale import TimescaleStack

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StackReport:
    database: str
    kafka: str
    mlflow: str
    notes: list[str]


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
    return StackReport(redact(settings.database_url), settings.kafka_bootstrap, mlflow.url, notes)


def down(settings: Settings) -> None:
    timescale, broker, mlflow = _services(settings)
    if is_loopback(mlflow.host):
        mlflow.stop()
    if is_loopback(broker.host):
        broker.stop()
    if is_loopback(timescale.host):
        timescale.stop()
