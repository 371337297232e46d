"""One database role per service (migration 0007): each can do its job and nothing more.

Login roles named after this run are made members of the group roles ``llmhub_ingest``,
``llmhub_api``, ``llmhub_dagster`` and ``llmhub_mlflow`` in the test database (trust
authentication, as in the local stack) and dropped afterwards. The ingest role runs the real
ingester: through the broker, COPY, dead letters, offsets and advisory locks.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from alembic import command
from psycopg import errors, sql

from integration.conftest import IsolatedStack
from llmhub.config import Settings
from llmhub.db import alembic_config, migrate
from llmhub.ingest.engine import Ingestor

pytestmark = pytest.mark.integration

EventFactory = Callable[..., dict[str, Any]]
SERVICES = ("ingest", "api", "dagster", "mlflow")


def _url(settings: Settings, role: str) -> str:
    parts = urlsplit(settings.database_url)
    netloc = f"{role}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@pytest.fixture
def logins(test_settings: Settings) -> Iterator[dict[str, str]]:
    """service -> a login role of this run that is a member of ``llmhub_<service>``; plus a
    table in ``marts`` built by the owner, as dbt would."""
    run = f"t{uuid.uuid4().hex[:8]}"
    names = {service: f"{run}_{service}" for service in SERVICES}
    with psycopg.connect(test_settings.database_url, autocommit=True) as conn:
        for service, name in names.items():
            conn.execute(
                sql.SQL("create role {} login in role {}").format(
                    sql.Identifier(name), sql.Identifier(f"llmhub_{service}")
                )
            )
        conn.execute(
            sql.SQL("create table marts.{} (tenant_id text, requests bigint)").format(
                sql.Identifier(f"{run}_probe")
            )
        )
    names["probe"] = f"{run}_probe"
    try:
        yield names
    finally:
        with psycopg.connect(test_settings.database_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop table if exists marts.{}").format(sql.Identifier(f"{run}_probe"))
            )
            for service in SERVICES:
                conn.execute(
                    sql.SQL("drop role if exists {}").format(sql.Identifier(names[service]))
                )


def _as(settings: Settings, role: str) -> psycopg.Connection:
    return psycopg.connect(_url(settings, role), autocommit=True)


def _probe(logins: dict[str, str], template: str) -> sql.Composed:
    """``template`` with ``{}`` replaced by this run's mart table."""
    return sql.SQL(template).format(sql.Identifier("marts", logins["probe"]))


def _refused(conn: psycopg.Connection, statement: str | sql.Composable, params: Any = None) -> bool:
    try:
        conn.execute(statement, params)
    except (errors.InsufficientPrivilege, errors.RaiseException):
        return True
    return False


def test_ingest_role_runs_the_ingester_and_can_do_nothing_else(
    stack: IsolatedStack, logins: dict[str, str], event: EventFactory
) -> None:
    stack.send("llm.telemetry", [json.dumps(event("telemetry")).encode() for _ in range(20)])
    stack.send("llm.telemetry", [b"{broken"])
    stack.send("llm.cost", [json.dumps(event("cost")).encode() for _ in range(3)])
    as_ingest = replace(stack.settings, database_url=_url(stack.settings, logins["ingest"]))
    report = Ingestor(as_ingest).run()
    assert report.rows_written == {"llm_requests": 20, "cost_records": 3}
    assert stack.count("llm_requests") == 20 and stack.count("cost_records") == 3
    assert sum(stack.stored_offsets().values()) == 24
    # Redelivery goes through the staging-table fallback (a temporary table) as this role too.
    stack.conn.execute(
        "delete from raw.kafka_offsets where consumer_group = %s", (stack.settings.consumer_group,)
    )
    again = Ingestor(as_ingest).run()
    assert again.duplicates_skipped == {"llm_requests": 20, "cost_records": 3}

    with _as(stack.settings, logins["ingest"]) as conn:
        assert _refused(conn, _probe(logins, "select * from {}"))
        assert _refused(conn, "select * from analytics.anomalies")
        assert _refused(conn, "delete from raw.llm_requests")
        assert _refused(conn, "truncate raw.llm_requests")
        assert _refused(conn, "drop table raw.llm_requests")
        assert _refused(conn, "drop table raw.dead_letter")
        assert _refused(conn, "create table raw.intruder (x int)")
        assert _refused(conn, "select raw.drop_expired_chunks('llm_requests', 1)")
    assert stack.count("llm_requests") == 20


def test_api_role_cannot_touch_raw_and_reads_only_tables_under_row_level_security(
    test_settings: Settings, logins: dict[str, str]
) -> None:
    with _as(test_settings, logins["api"]) as conn:
        assert _refused(conn, "select count(*) from raw.llm_requests")
        assert _refused(
            conn,
            "insert into raw.dead_letter (topic, kafka_partition, kafka_offset, error_class, "
            "error) values ('x', 0, 0, 'schema', 'x')",
        )
        assert _refused(conn, "update raw.kafka_offsets set next_offset = 0")
        assert _refused(conn, _probe(logins, "drop table {}"))
        assert _refused(conn, "create table marts.intruder (x int)")
        assert _refused(conn, "create table analytics.intruder (x int)")
        assert _refused(conn, _probe(logins, "select * from {}"))
    with psycopg.connect(test_settings.database_url) as conn:
        # Whatever the API may read (grants from the dbt post-hook or the API's own migration)
        # must be filtered by row-level security.
        readable = conn.execute(
            """
            select c.oid::regclass::text, c.relrowsecurity
            from pg_catalog.pg_class as c
            join pg_catalog.pg_namespace as n on n.oid = c.relnamespace
            where c.relkind in ('r', 'p', 'v', 'm')
                and n.nspname not in ('pg_catalog', 'information_schema')
                and n.nspname not like '\\_timescaledb%%'
                and n.nspname <> 'timescaledb_information'
                and n.nspname <> 'timescaledb_experimental'
                and has_table_privilege('llmhub_api', c.oid, 'select')
            """
        ).fetchall()
    assert [name for name, rls in readable if not rls and not name.startswith("api.")] == []


def test_dagster_role_builds_marts_publishes_and_applies_retention(
    test_settings: Settings, logins: dict[str, str]
) -> None:
    with _as(test_settings, logins["dagster"]) as conn:
        # dbt: create and replace its relations; reads raw.
        conn.execute("create table marts.dagster_probe as select 1 as x")
        conn.execute("drop table marts.dagster_probe")
        conn.execute("select count(*) from raw.llm_requests")
        # ML outputs.
        conn.execute(
            "insert into analytics.budgets (tenant_id, monthly_budget_usd) "
            "values ('service-roles-test', 10)"
        )
        conn.execute("delete from analytics.budgets where tenant_id = 'service-roles-test'")
        # Retention without owning the raw tables.
        conn.execute("select raw.drop_expired_chunks('llm_requests', 3650)").fetchall()
        assert _refused(conn, "select raw.drop_expired_chunks('dead_letter', 1)")
        assert _refused(conn, "select raw.drop_expired_chunks('llm_requests', 0)")
        assert _refused(conn, "drop table raw.llm_requests")
        assert _refused(conn, "alter table raw.llm_requests add column intruder int")


def test_mlflow_role_reads_nothing_of_the_hub(
    test_settings: Settings, logins: dict[str, str]
) -> None:
    with _as(test_settings, logins["mlflow"]) as conn:
        for statement in (
            "select 1 from raw.llm_requests limit 1",
            _probe(logins, "select 1 from {} limit 1"),
            "select 1 from analytics.anomalies limit 1",
            "create table marts.intruder (x int)",
        ):
            assert _refused(conn, statement), statement


def test_dbt_relations_belong_to_the_dagster_role(test_settings: Settings) -> None:
    # Built before the migration by the owner: handed over, so dbt as Dagster can replace them.
    with psycopg.connect(test_settings.database_url, autocommit=True) as conn:
        conn.execute("create table marts.prebuilt_probe (x int)")
        try:
            command.downgrade(alembic_config(test_settings), "0005")
            migrate(test_settings)
            owner = conn.execute(
                "select pg_get_userbyid(relowner) from pg_class "
                "where oid = 'marts.prebuilt_probe'::regclass"
            ).fetchone()
            assert owner == ("llmhub_dagster",)
        finally:
            conn.execute("drop table if exists marts.prebuilt_probe")
