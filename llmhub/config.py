"""Settings from the environment, with local-stack defaults.

This is the one place that reads ``LLMHUB_*`` variables; everything else receives a ``Settings``.
Pointing ``LLMHUB_DATABASE_URL`` and ``LLMHUB_KAFKA_BOOTSTRAP`` at a real TimescaleDB and a real
Kafka cluster is all a deployment changes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5433/llmhub"
DEFAULT_KAFKA_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_STACK_DIR = "/var/lib/llmhub"
DEFAULT_PROMETHEUS_URL = "http://127.0.0.1:9090"
DEFAULT_CONSUMER_GROUP = "llmhub-ingest"


DEFAULT_MLFLOW_TRACKING_URI = "http://127.0.0.1:5000"


def mlflow_tracking_uri() -> str:
    """The MLflow tracking server (``MLFLOW_TRACKING_URI``, MLflow's own variable), else the
    local stack's."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_MLFLOW_TRACKING_URI


def prometheus_url() -> str:
    """The Prometheus the local stack runs (``LLMHUB_PROMETHEUS_URL``), else its default."""
    return os.environ.get("LLMHUB_PROMETHEUS_URL") or DEFAULT_PROMETHEUS_URL


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
    def metrics_dir(self) -> Path:
        """Where each Dagster ingestion run writes its Prometheus textfile (node_exporter's
        textfile collector serves the directory)."""
        return Path(os.environ.get("LLMHUB_METRICS_DIR") or self.stack_dir / "metrics")

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


@dataclass(frozen=True)
class ApiSettings:
    """The HTTP API (``llmhub serve``): bind address, its database role, auth and quotas.

    ``database_url`` is the API's own login (role ``llmhub_api``, migration 0010), never the
    owner: row-level security then does the tenant filtering of every read.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    database_url: str = DEFAULT_DATABASE_URL.replace("postgres@", "llmhub_api@", 1)
    pool_size: int = 16
    # OIDC: a JWKS URL (or a local JWKS file), the issuer and audience to require, and the
    # claims naming the tenant and the role.
    jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_tenant_claim: str = "tenant_id"
    jwt_role_claim: str = "role"
    # Per-tenant quotas (token buckets shared by all API processes through PostgreSQL).
    ingest_rate_per_s: float = 5_000.0
    ingest_burst: float = 50_000.0
    monthly_events: int = 100_000_000
    query_rate_per_s: float = 50.0
    query_burst: float = 200.0
    # Requests in flight past which ingestion answers 503 (the broker is not keeping up).
    max_inflight_ingest: int = 64
    max_body_bytes: int = 16 * 1024 * 1024
    # Read path: mart results cached per (tenant, query, mart version) up to this many MB per
    # process (0: no cache); how often each process polls api.cache_versions (which also
    # invalidates its API key lookups); query tokens leased from the shared bucket at a time.
    cache_mb: int = 64
    cache_poll_s: float = 1.0
    query_lease: int = 16


def _api_database_url(env: Mapping[str, str], database_url: str) -> str:
    if env.get("LLMHUB_API_DATABASE_URL"):
        return env["LLMHUB_API_DATABASE_URL"]
    parts = urlsplit(database_url)
    netloc = "llmhub_api@" + parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def load_api_settings(settings: Settings | None = None) -> ApiSettings:
    """Build ``ApiSettings`` from ``LLMHUB_API_*`` variables (database defaults to the hub's
    server and database as role ``llmhub_api``)."""
    env = os.environ
    settings = settings or load_settings()
    return ApiSettings(
        host=env.get("LLMHUB_API_HOST") or "127.0.0.1",
        port=_env_int("LLMHUB_API_PORT", 8080),
        workers=_env_int("LLMHUB_API_WORKERS", 1),
        database_url=_api_database_url(env, settings.database_url),
        pool_size=_env_int("LLMHUB_API_POOL_SIZE", 16),
        jwks_url=env.get("LLMHUB_API_JWKS_URL") or None,
        jwt_issuer=env.get("LLMHUB_API_JWT_ISSUER") or None,
        jwt_audience=env.get("LLMHUB_API_JWT_AUDIENCE") or None,
        jwt_tenant_claim=env.get("LLMHUB_API_JWT_TENANT_CLAIM") or "tenant_id",
        jwt_role_claim=env.get("LLMHUB_API_JWT_ROLE_CLAIM") or "role",
        ingest_rate_per_s=_env_float("LLMHUB_API_INGEST_RATE", 5_000.0),
        ingest_burst=_env_float("LLMHUB_API_INGEST_BURST", 50_000.0),
        monthly_events=_env_int("LLMHUB_API_MONTHLY_EVENTS", 100_000_000),
        query_rate_per_s=_env_float("LLMHUB_API_QUERY_RATE", 50.0),
        query_burst=_env_float("LLMHUB_API_QUERY_BURST", 200.0),
        max_inflight_ingest=_env_int("LLMHUB_API_MAX_INFLIGHT", 64),
        max_body_bytes=_env_int("LLMHUB_API_MAX_BODY_BYTES", 16 * 1024 * 1024),
        cache_mb=_env_int("LLMHUB_API_CACHE_MB", 64),
        cache_poll_s=_env_float("LLMHUB_API_CACHE_POLL_S", 1.0),
        query_lease=_env_int("LLMHUB_API_QUERY_LEASE", 16),
    )
