"""The dbt assets run by Dagster against a fresh TimescaleDB database of hand-made raw rows.

Database ``llmhub_test_dbt`` is created and migrated for this module and dropped afterwards; the
shared ``llmhub`` database is never touched. Only TimescaleDB is needed (no broker).
"""

import os
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import dagster as dg
import psycopg
import pytest
from psycopg import sql

from assets.ingestion import RAW_FRESHNESS_CHECKS
from assets.quality import mart_quality_checks, raw_quality_checks
from assets.resources import HubResource
from assets.resources.dbt import dbt_cli_resource, dbt_project, prepare
from assets.transform import dbt_model_assets
from integration.conftest import TEST_DATABASE
from llmhub.config import Settings, load_settings, redact, with_database
from llmhub.db import migrate

dbt_hourly_models, dbt_daily_models = dbt_model_assets(prepare(dbt_project))

pytestmark = pytest.mark.integration

DATABASE = f"{TEST_DATABASE}_dbt"
MARTS = (
    "fct_llm_requests_hourly",
    "fct_llm_requests_daily",
    "fct_llm_cost_daily",
    "fct_security_alerts_daily",
    "fct_policy_violations_daily",
    "dim_assets",
    "dim_models",
)


def stack_settings() -> Settings:
    """The hub settings, after checking TimescaleDB answers: skip (fail when
    ``LLMHUB_REQUIRE_STACK=1``) when it does not."""
    settings = load_settings()
    try:
        with psycopg.connect(settings.database_url, connect_timeout=3):
            pass
    except psycopg.Error as exc:
        message = (
            f"TimescaleDB at {redact(settings.database_url)} unreachable ({exc}); "
            "start the local stack with `llmhub stack up`"
        )
        if os.environ.get("LLMHUB_REQUIRE_STACK") == "1":
            pytest.fail(f"{message} (LLMHUB_REQUIRE_STACK=1)", pytrace=False)
        pytest.skip(message)
    return settings


@contextmanager
def fresh_database(name: str) -> Iterator[Settings]:
    """Settings for database ``name``, created (dropped first if a previous run left it) and
    migrated; dropped on exit."""
    settings = stack_settings()
    admin_url = with_database(settings.database_url, "postgres")
    drop = sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(drop)
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        test = replace(settings, database_url=with_database(settings.database_url, name))
        migrate(test)
        yield test
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(drop)


def hub_resource(settings: Settings) -> HubResource:
    return HubResource(database_url=settings.database_url, kafka_bootstrap=settings.kafka_bootstrap)


def resources(settings: Settings) -> dict[str, Any]:
    return {"dbt": dbt_cli_resource(dbt_project), "hub": hub_resource(settings)}


@dataclass
class RawRows:
    """What ``seed_raw`` inserted: enough to predict the marts."""

    requests_per_day: Counter[date] = field(default_factory=Counter)
    requests: int = 0
    billed_cost_usd: Decimal = Decimal("0")
    alerts: int = 0
    violations: int = 0


_offsets = iter(range(1_000_000))

ENVELOPE = (
    "event_id, occurred_at, tenant_id, asset_id, event_type, source_module, severity, "
    "schema_version, kafka_partition, kafka_offset"
)


def _envelope(at: datetime, tenant: str, asset: str, event_type: str, module: str) -> tuple:
    return (uuid.uuid4(), at, tenant, asset, event_type, module, "info", "1.0", 0, next(_offsets))


def insert_request(
    conn: psycopg.Connection,
    at: datetime,
    *,
    tenant: str = "tenant-a",
    asset: str = "app-chat",
    provider: str = "openai",
    model: str = "gpt-4o",
    status: str = "ok",
    severity: str = "info",
    latency_ms: float = 800.0,
    ttft_ms: float | None = 150.0,
) -> None:
    """One raw.llm_requests row, written directly (the ingestion contract is bypassed)."""
    envelope = list(_envelope(at, tenant, asset, "llm_request", "observatory"))
    envelope[6] = severity
    conn.execute(
        f"insert into raw.llm_requests ({ENVELOPE}, operation_name, provider, request_model, "  # noqa: S608
        "response_model, status, http_status_code, input_tokens, output_tokens, "
        "cache_read_tokens, latency_ms, time_to_first_token_ms, cost_usd, user_id) "
        "values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'chat', %s, %s, %s, %s, %s, "
        "1200, 300, 200, %s, %s, 0.004, 'user-1')",
        (
            *envelope,
            provider,
            model,
            f"{model}-snapshot",
            status,
            {"ok": 200, "error": 500, "rate_limited": 429}[status],
            latency_ms,
            ttft_ms if status == "ok" else None,
        ),
    )


def seed_raw(settings: Settings) -> RawRows:
    """A small, hand-made raw history relative to now: two complete UTC days and the last
    minutes, two tenants, a re-registered application, a bill, an alert and a violation."""
    now = datetime.now(UTC).replace(microsecond=0)
    today = now.replace(hour=0, minute=0, second=0)
    yesterday, day_before = today - timedelta(days=1), today - timedelta(days=2)
    registered = today - timedelta(days=10)
    rows = RawRows()
    requests: list[tuple[datetime, dict[str, Any]]] = [
        (day_before + timedelta(hours=10, minutes=5), {}),
        (day_before + timedelta(hours=10, minutes=20), {"latency_ms": 1500.0}),
        (day_before + timedelta(hours=14), {"tenant": "tenant-b", "asset": "app-search"}),
        (yesterday + timedelta(minutes=30), {"model": "gpt-4o-mini"}),
        (yesterday + timedelta(hours=9, minutes=15), {}),
        (yesterday + timedelta(hours=9, minutes=16), {"ttft_ms": None}),
        (yesterday + timedelta(hours=9, minutes=17), {"status": "error"}),
        (
            yesterday + timedelta(hours=12),
            {
                "tenant": "tenant-b",
                "asset": "app-search",
                "provider": "anthropic",
                "model": "claude-sonnet-4",
                "status": "rate_limited",
            },
        ),
        (
            yesterday + timedelta(hours=12, minutes=5),
            {
                "tenant": "tenant-b",
                "asset": "app-search",
                "provider": "anthropic",
                "model": "claude-sonnet-4",
            },
        ),
        (yesterday + timedelta(hours=23, minutes=59), {"latency_ms": 420.0}),
        # Today's, even in the first minutes after midnight (regression: at 00:03 UTC they fell
        # on yesterday and the complete days' counts the tests expect were off by them).
        (max(now - timedelta(minutes=5), today), {}),
        (max(now - timedelta(minutes=3), today), {"tenant": "tenant-b", "asset": "app-search"}),
    ]
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        for at, overrides in requests:
            insert_request(conn, at, **overrides)
            rows.requests_per_day[at.date()] += 1
            rows.requests += 1
        registry = [
            (registered, "tenant-a", "app-chat", "application", "Chat", "1.0", "gpt-4o"),
            (registered, "tenant-a", "model-gpt-4o", "model", "GPT-4o", "2024-08-06", "gpt-4o"),
            (registered, "tenant-b", "app-search", "application", "Search", "3.1", "gpt-4o"),
            # A new release of the chat application: yesterday's later requests belong to it.
            (
                yesterday + timedelta(hours=9),
                "tenant-a",
                "app-chat",
                "application",
                "Chat",
                "1.1",
                "gpt-4o",
            ),
        ]
        for at, tenant, asset, kind, name, version, model in registry:
            conn.execute(
                f"insert into raw.registry_events ({ENVELOPE}, asset_kind, name, version, "  # noqa: S608
                "provider, model, owner, lifecycle_status) values "
                "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'openai', %s, "
                "'platform-team', 'active')",
                (
                    *_envelope(at, tenant, asset, "asset_registered", "registry"),
                    kind,
                    name,
                    version,
                    model,
                ),
            )
        conn.execute(
            f"insert into raw.cost_records ({ENVELOPE}, provider, model, input_tokens, "  # noqa: S608
            "output_tokens, cache_read_tokens, request_count, cost_usd, currency, "
            "billing_period_start, billing_period_end, invoice_id, line_item_id) values "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'openai', 'gpt-4o', 6000, 1500, 1000, 5, "
            "1.25, 'USD', %s, %s, 'inv-1', 'line-1')",
            (
                *_envelope(
                    now - timedelta(minutes=4),
                    "tenant-a",
                    "model-gpt-4o",
                    "billing_record",
                    "costops",
                ),
                yesterday.date(),
                yesterday.date(),
            ),
        )
        rows.billed_cost_usd = Decimal("1.25")
        conn.execute(
            f"insert into raw.security_alerts ({ENVELOPE}, alert_type, detector, action_taken, "  # noqa: S608
            "confidence, request_id, description) values "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'prompt_injection', 'heuristic-v2', "
            "'blocked', 0.93, 'req-1', 'ignore previous instructions')",
            _envelope(
                now - timedelta(minutes=10), "tenant-a", "app-chat", "threat_detected", "sentinel"
            ),
        )
        rows.alerts = 1
        conn.execute(
            f"insert into raw.policy_violations ({ENVELOPE}, policy_id, policy_name, "  # noqa: S608
            "violation_type, action_taken, request_id) values "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'pol-1', 'No PII in prompts', "
            "'pii_in_prompt', 'redacted', 'req-1')",
            _envelope(
                now - timedelta(minutes=10),
                "tenant-a",
                "app-chat",
                "policy_violation",
                "policy-engine",
            ),
        )
        rows.violations = 1
    return rows


def materialize_all(settings: Settings) -> dg.ExecuteInProcessResult:
    """Both dbt definitions with their dbt tests, the GX checks and the raw freshness checks,
    in one run."""
    return dg.materialize(
        [
            dbt_hourly_models,
            dbt_daily_models,
            raw_quality_checks,
            mart_quality_checks,
            *RAW_FRESHNESS_CHECKS,
        ],
        selection=dg.AssetSelection.all() | dg.AssetSelection.all_asset_checks(),
        resources=resources(settings),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


@pytest.fixture(scope="module")
def database() -> Iterator[tuple[Settings, RawRows]]:
    with fresh_database(DATABASE) as settings:
        yield settings, seed_raw(settings)


@pytest.fixture(scope="module")
def built(database: tuple[Settings, RawRows]) -> dg.ExecuteInProcessResult:
    settings, _ = database
    return materialize_all(settings)


def _scalar(settings: Settings, query: str) -> Any:
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        row = conn.execute(query).fetchone()
    return row[0] if row else None


def test_the_build_succeeds_and_the_marts_hold_every_raw_request(
    database: tuple[Settings, RawRows], built: dg.ExecuteInProcessResult
) -> None:
    settings, raw = database

    assert built.success
    assert _scalar(settings, "select sum(request_count) from marts.fct_llm_requests_hourly") == (
        raw.requests
    )
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        daily = dict(
            conn.execute(
                "select request_date, sum(request_count)::int from marts.fct_llm_requests_daily "
                "group by 1"
            ).fetchall()
        )
    assert daily == dict(raw.requests_per_day)
    assert _scalar(settings, "select count(*) from marts.dim_assets") == 4
    assert _scalar(settings, "select count(*) from marts.dim_models") == 1
    assert _scalar(settings, "select sum(billed_cost_usd) from marts.fct_llm_cost_daily") == (
        raw.billed_cost_usd
    )
    assert _scalar(settings, "select sum(alert_count) from marts.fct_security_alerts_daily") == 1
    assert (
        _scalar(settings, "select sum(violation_count) from marts.fct_policy_violations_daily") == 1
    )


def test_every_model_is_materialised_and_marts_report_rows_and_time_range(
    database: tuple[Settings, RawRows], built: dg.ExecuteInProcessResult
) -> None:
    settings, _ = database
    materialised = {m.asset_key: m for m in built.get_asset_materialization_events()}
    expected = set(dbt_hourly_models.keys) | set(dbt_daily_models.keys)

    assert set(materialised) == expected
    for table in MARTS:
        metadata = materialised[dg.AssetKey(["marts", table])].materialization.metadata
        rows = _scalar(settings, f"select count(*) from marts.{table}")  # noqa: S608
        assert metadata["dagster/row_count"].value == rows > 0, table
        assert {"time_range_start", "time_range_end", "last_event_at"} <= set(metadata), table
    hourly = materialised[dg.AssetKey(["marts", "fct_llm_requests_hourly"])].materialization
    newest_hour = _scalar(
        settings, "select max(request_hour_at) from marts.fct_llm_requests_hourly"
    )
    newest_event = _scalar(settings, "select max(occurred_at) from raw.llm_requests")
    assert hourly.metadata["time_range_end"].value == newest_hour.timestamp()
    assert hourly.metadata["last_event_at"].value == newest_event.timestamp()


def test_dbt_tests_and_quality_checks_all_pass_on_good_data(
    built: dg.ExecuteInProcessResult,
) -> None:
    evaluations = built.get_asset_check_evaluations()
    names = {(e.asset_key.to_user_string(), e.check_name) for e in evaluations}
    failed = [(e.asset_key.to_user_string(), e.check_name) for e in evaluations if not e.passed]

    assert failed == []
    # dbt tests (generic and singular), GX suites on raw and marts, raw freshness: all reported.
    assert {
        ("staging/stg_raw__llm_requests", "unique_stg_raw__llm_requests_request_id"),
        ("marts/dim_assets", "assert_dim_assets_history_is_contiguous"),
        ("raw/llm_requests", "valid_values"),
        ("raw/llm_requests", "raw_table_fresh"),
        ("marts/fct_llm_requests_hourly", "valid_values"),
        ("marts/fct_llm_requests_daily", "counts_match_raw"),
    } <= names


def test_lineage_runs_from_kafka_through_raw_and_staging_to_the_marts() -> None:
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()

    def parents(*path: str) -> set[str]:
        return {k.to_user_string() for k in graph.get(dg.AssetKey(list(path))).parent_keys}

    raw_requests = graph.get(dg.AssetKey(["raw", "llm_requests"]))
    assert raw_requests.is_materializable
    assert graph.assets_def_for_key(raw_requests.key).node_def.name == "kafka_ingestion"
    assert parents("staging", "stg_raw__llm_requests") == {"raw/llm_requests"}
    assert parents("intermediate", "int_registry__asset_versions") == {
        "staging/stg_raw__registry_events"
    }
    assert parents("marts", "dim_assets") == {"intermediate/int_registry__asset_versions"}
    # Regression: the intermediate model read the dim_assets mart (an upward ref).
    assert parents("intermediate", "int_llm_requests_enriched") == {
        "staging/stg_raw__llm_requests",
        "intermediate/int_registry__asset_versions",
    }
    assert parents("marts", "fct_llm_requests_hourly") == {"intermediate/int_llm_requests_enriched"}
    assert "marts/fct_llm_requests_daily" in parents("marts", "fct_llm_cost_daily")
    assert parents("staging", "stg_raw__cost_records") == {"raw/cost_records"}
