"""Settings from the environment, with local-stack defaults.

This is the one place that reads ``LLMHUB_*`` variables; everything else receives a ``Settings``.
Pointing ``LLMHUB_DATABASE_URL`` and ``LLMHUB_KAFKA_BOOTSTRAP`` at a real TimescaleDB and a real
Kafka cluster is all a deployment changes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5433/llmhub"
DEFAULT_KAFKA_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_STACK_DIR = "/var/lib/llmhub"
DEFAULT_CONSUMER_GROUP = "llmhub-ingest"


DEFAULT_MLFLOW_TRACKING_URI = "http://127.0.0.1:5000"


def mlflow_tracking_uri() -> str:
    """The MLflow tracking server (``MLFLOW_TRACKING_URI``, MLflow's own variable), else the
    local stack's."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_MLFLOW_TRACKING_URI


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else default


def with_database(url: str, database: str) -> str:
    """Return ``url`` pointing at another database on the same server."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


def redact(url: str) -> str:
    """Return ``url`` with any password replaced, safe for logs and Dagit metadata."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class RetentionSettings:
    """Days of raw data kept per table (chunks entirely older than this are dropped)."""

    days: dict[str, int] = field(
        default_factory=lambda: {
            "llm_requests": _env_int("LLMHUB_RETENTION_TELEMETRY_DAYS", 30),
            "cost_records": _env_int("LLMHUB_RETENTION_COST_DAYS", 90),
            "security_alerts": _env_int("LLMHUB_RETENTION_SECURITY_DAYS", 90),
            "policy_violations": _env_int("LLMHUB_RETENTION_GOVERNANCE_DAYS", 90),
            "registry_events": _env_int("LLMHUB_RETENTION_REGISTRY_DAYS", 3650),
        }
    )


@dataclass(frozen=True)
class Settings:
    """Runtime configuration of the hub (all fields overridable by environment variables)."""

    database_url: str = DEFAULT_DATABASE_URL
    kafka_bootstrap: str = DEFAULT_KAFKA_BOOTSTRAP
    consumer_group: str = DEFAULT_CONSUMER_GROUP
    # Prepended to every contract topic name (per-environment topics, isolated test runs).
    topic_prefix: str = ""
    topic_replication: int = 1
    stack_dir: Path = Path(DEFAULT_STACK_DIR)
    batch_max_records: int = 50_000
    max_message_bytes: int = 1_048_576
    future_skew_s: float = 300.0
    max_event_age_days: int = 3650
    naive_timezone: dict[str, str] = field(default_factory=dict)
    retention: RetentionSettings = field(default_factory=RetentionSettings)

    def topic(self, name: str) -> str:
        """The physical Kafka topic of contract topic ``name``."""
        return f"{self.topic_prefix}{name}"

    @property
    def dagster_storage_url(self) -> str:
        """Dagster's own database on the same server, through psycopg2 (see the Makefile)."""
        default = with_database(self.database_url, "dagster").replace(
            "postgresql://", "postgresql+psycopg2://", 1
        )
        return os.environ.get("LLMHUB_DAGSTER_STORAGE_URL") or default


def _parse_zones(raw: str) -> dict[str, str]:
    """Parse ``topic=Zone,topic=Zone`` (zones for topics whose producers send naive times)."""
    zones: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        topic, _, zone = item.partition("=")
        if not zone:
            raise ValueError(f"LLMHUB_NAIVE_TIMEZONES entry {item!r} is not topic=Zone")
        zones[topic.strip()] = zone.strip()
    return zones


def load_settings() -> Settings:
    """Build ``Settings`` from ``LLMHUB_*`` environment variables."""
    env = os.environ
    return Settings(
        database_url=env.get("LLMHUB_DATABASE_URL") or DEFAULT_DATABASE_URL,
        kafka_bootstrap=env.get("LLMHUB_KAFKA_BOOTSTRAP") or DEFAULT_KAFKA_BOOTSTRAP,
        consumer_group=env.get("LLMHUB_CONSUMER_GROUP") or DEFAULT_CONSUMER_GROUP,
        topic_prefix=env.get("LLMHUB_TOPIC_PREFIX", ""),
        topic_replication=_env_int("LLMHUB_TOPIC_REPLICATION", 1),
        stack_dir=Path(env.get("LLMHUB_STACK_DIR") or DEFAULT_STACK_DIR),
        batch_max_records=_env_int("LLMHUB_BATCH_MAX_RECORDS", 50_000),
        max_message_bytes=_env_int("LLMHUB_MAX_MESSAGE_BYTES", 1_048_576),
        future_skew_s=_env_float("LLMHUB_FUTURE_SKEW_S", 300.0),
        max_event_age_days=_env_int("LLMHUB_MAX_EVENT_AGE_DAYS", 3650),
        naive_timezone=_parse_zones(env.get("LLMHUB_NAIVE_TIMEZONES", "")),
    )
