"""Row-level security on the ML outputs (migration 0011): tenant analysts read their own rows.

Two tenants' anomalies, forecasts and budgets are published; a tenant analyst of tenant A reads
only A's, the analyst reads both, and anomaly feedback is written only for one's own tenants and
is attributed to the role that wrote it, whatever the writer claims.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from alembic import command
from psycopg import errors, sql

from integration.conftest import TEST_DATABASE
from llmhub.config import Settings, load_settings, redact, with_database
from llmhub.db import alembic_config

pytestmark = pytest.mark.integration

DATABASE = f"{TEST_DATABASE}_analytics_rls"
# Ids with separators: the key parts stay apart in their own columns.
TENANT_A, TENANT_B = "acme/eu", "acme"
HOUR = datetime(2026, 11, 28, 10, tzinfo=UTC)


@dataclass(frozen=True)
class Roles:
    settings: Settings
    reader_a: str
    reader_b: str
    analyst: str

    def connect(self, role: str | None = None) -> psycopg.Connection:
        url = self.settings.database_url
        if role:
            parts = urlsplit(url)
            netloc = f"{role}@{parts.hostname}:{parts.port or 5432}"
            url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
        return psycopg.connect(url, autocommit=True)


def _drop(admin_url: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(DATABASE))
        )


def _publish(conn: psycopg.Connection, tenant: str) -> None:
    conn.execute(
        "insert into analytics.anomalies (bucket_at, tenant_id, asset_id, request_model, metric, "
        "observed, expected, deviation, score, is_anomaly, detector, model_name, model_version) "
        "values (%s, %s, 'chat/app', 'openai/gpt-4o', 'latency_p95_ms', 900, 300, 6, 0.99, true, "
        "'ensemble', 'detector', '1')",
        (HOUR, tenant),
    )
    conn.execute(
        "insert into analytics.forecasts (series_key, tenant_id, asset_id, metric, grain, "
        "target_at, forecast_made_at, yhat, yhat_lower, yhat_upper, model_name, model_version) "
        "values (%s, %s, 'chat/app', 'request_count', 'hour', %s, %s, 10, 5, 15, 'f', '1')",
        (f'["{tenant}","chat/app","openai/gpt-4o"]', tenant, HOUR, HOUR),
    )
    conn.execute(
        "insert into analytics.budgets (tenant_id, monthly_budget_usd) values (%s, 100)", (tenant,)
    )


@pytest.fixture(scope="module")
def roles() -> Iterator[Roles]:
    base = load_settings()
    admin_url = with_database(base.database_url, "postgres")
    try:
        _drop(admin_url)
    except psycopg.OperationalError as exc:
        message = f"TimescaleDB at {redact(base.database_url)} unreachable: {exc}"
        if os.environ.get("LLMHUB_REQUIRE_STACK") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    run = f"llmhub_t{uuid.uuid4().hex[:8]}"
    out = Roles(
        settings=replace(base, database_url=with_database(base.database_url, DATABASE)),
        reader_a=f"{run}_reader_a",
        reader_b=f"{run}_reader_b",
        analyst=f"{run}_analyst",
    )
    try:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(DATABASE)))
        # "heads": one head once the revisions are chained; two while a branch adds its own.
        command.upgrade(alembic_config(out.settings), "heads")
        with out.connect() as conn:
            for tenant in (TENANT_A, TENANT_B):
                _publish(conn, tenant)
            ident = sql.Identifier
            for name in (out.reader_a, out.reader_b):
                conn.execute(sql.SQL("create role {} login").format(ident(name)))
            conn.execute(sql.SQL("create role {} login in role analyst").format(ident(out.analyst)))
            grant = "select marts_access.grant_tenant(%s, %s)"
            conn.execute(grant, (out.reader_a, TENANT_A))
            conn.execute(grant, (out.reader_b, TENANT_B))
        yield out
    finally:
        _drop(admin_url)
        with psycopg.connect(admin_url, autocommit=True) as conn:
            for name in (out.reader_a, out.reader_b, out.analyst):
                conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(name)))


@pytest.mark.parametrize("table", ["anomalies", "forecasts", "budgets"])
def test_tenant_analysts_read_only_their_tenant(roles: Roles, table: str) -> None:
    query = sql.SQL("select distinct tenant_id from analytics.{} order by 1").format(
        sql.Identifier(table)
    )
    seen = {}
    for role in (roles.reader_a, roles.reader_b, roles.analyst):
        with roles.connect(role) as conn:
            seen[role] = [row[0] for row in conn.execute(query)]
    # "acme" must not see "acme/eu" (nor the reverse): tenant ids are compared whole.
    assert seen[roles.reader_a] == [TENANT_A]
    assert seen[roles.reader_b] == [TENANT_B]
    assert seen[roles.analyst] == sorted([TENANT_A, TENANT_B])


def test_feedback_is_attributed_to_the_writer_and_limited_to_its_tenants(roles: Roles) -> None:
    insert = (
        "insert into analytics.anomaly_feedback (bucket_at, tenant_id, asset_id, request_model, "
        "metric, verdict, noted_by) values (%s, %s, 'chat/app', 'openai/gpt-4o', "
        "'latency_p95_ms', 'false_positive', 'somebody-else')"
    )
    with roles.connect(roles.reader_a) as conn:
        conn.execute(insert, (HOUR, TENANT_A))
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(insert, (HOUR, TENANT_B))
    with roles.connect() as conn:
        rows = conn.execute("select tenant_id, noted_by from analytics.anomaly_feedback").fetchall()
    assert rows == [(TENANT_A, roles.reader_a)]
    with roles.connect(roles.reader_b) as conn:
        assert conn.execute("select count(*) from analytics.anomaly_feedback").fetchone() == (0,)
