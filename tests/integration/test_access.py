"""Analyst access: read-only roles on the marts, per-tenant rows by row-level security.

The module builds its own database, ``llmhub_test_access``: migrated, a few raw rows of every
family for tenants A and B, the marts built by ``dbt build``. It creates uniquely named login
roles (roles are cluster-wide) and drops them and the database afterwards:

- ``<run>_tenant_a_reader``, a member of group ``<run>_tenant_a``, which is granted tenant A;
- ``<run>_tenant_b_reader``, granted tenant B directly;
- ``<run>_analyst_reader``, a member of ``analyst``;
- ``<run>_no_tenant_reader``, a member of ``tenant_analyst`` with no tenant granted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from conftest import make_event
from psycopg import errors, sql

from integration.conftest import TEST_DATABASE
from llmhub.config import Settings, load_settings, redact, with_database
from llmhub.contract.topics import BY_FAMILY, RAW_TABLES
from llmhub.db import migrate
from llmhub.ingest.normalize import Normalizer, Rejection
from llmhub.ingest.tables import TABLES

pytestmark = pytest.mark.integration

DATABASE = f"{TEST_DATABASE}_access"
DBT_PROJECT = Path(__file__).resolve().parents[2] / "dbt_project"
DBT = Path(sys.executable).with_name("dbt")
LLMHUB_CLI = Path(sys.executable).with_name("llmhub")
TENANT_A, TENANT_B = "tenant-a", "tenant-b"
MARTS = (
    "dim_assets",
    "dim_models",
    "fct_llm_requests_hourly",
    "fct_llm_requests_daily",
    "fct_llm_cost_daily",
    "fct_security_alerts_daily",
    "fct_policy_violations_daily",
)
# Marts of the alerting work (SLOs, SLA reports, alert delivery): row-level security like every
# mart, but empty in this database (no objectives, no notifications), so not counted per tenant.
EMPTY_MARTS = (
    "fct_slo_sli_daily",
    "fct_slo_error_budget",
    "fct_slo_burn_rate_alerts",
    "fct_sla_monthly",
    "fct_alert_delivery_daily",
)


@dataclass(frozen=True)
class AccessDb:
    """The built database, the owner's settings and the login roles of this run."""

    settings: Settings
    run: str
    dbt_dir: Path
    tenant_a_group: str
    tenant_a_reader: str
    tenant_b_reader: str
    analyst_reader: str
    no_tenant_reader: str

    def url(self, role: str) -> str:
        parts = urlsplit(self.settings.database_url)
        netloc = f"{role}@{parts.hostname}:{parts.port or 5432}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    def connect(self, role: str | None = None) -> psycopg.Connection:
        url = self.url(role) if role else self.settings.database_url
        return psycopg.connect(url, autocommit=True)


def _tenant_events(tenant: str, now: datetime) -> list[tuple[str, dict[str, Any]]]:
    """Registrations, requests, a bill, an alert and a violation of ``tenant``, ``app-chat``
    calling ``gpt-4o`` yesterday."""
    registered = (now - timedelta(days=2)).isoformat()
    day = (now - timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)
    events: list[tuple[str, dict[str, Any]]] = [
        (
            "registry",
            make_event(
                "registry", tenant_id=tenant, asset_id="model-gpt-4o", occurred_at=registered
            ),
        ),
        (
            "registry",
            make_event(
                "registry",
                tenant_id=tenant,
                asset_id="app-chat",
                occurred_at=registered,
                body={
                    "asset_kind": "application",
                    "name": "chat",
                    "version": "1",
                    "model": "gpt-4o",
                },
            ),
        ),
        (
            "cost",
            make_event(
                "cost",
                tenant_id=tenant,
                asset_id="model-gpt-4o",
                occurred_at=(day + timedelta(hours=13)).isoformat(),
                body={
                    "provider": "openai",
                    "model": "gpt-4o",
                    "request_count": 4,
                    "billing_period_start": day.date().isoformat(),
                    "billing_period_end": day.date().isoformat(),
                },
            ),
        ),
        ("security", make_event("security", tenant_id=tenant, occurred_at=day.isoformat())),
        ("governance", make_event("governance", tenant_id=tenant, occurred_at=day.isoformat())),
    ]
    for minutes in (0, 20, 65, 130):
        occurred_at = (day + timedelta(minutes=minutes)).isoformat()
        events.append(
            ("telemetry", make_event("telemetry", tenant_id=tenant, occurred_at=occurred_at))
        )
    return events


def _insert_raw(settings: Settings, events: list[tuple[str, dict[str, Any]]]) -> None:
    """Normalise the events as ingestion does and COPY the rows into their raw tables."""
    import orjson

    now = datetime.now(UTC)
    rows: dict[str, list[tuple]] = {}
    for offset, (family, event) in enumerate(events):
        normalizer = Normalizer(BY_FAMILY[family], settings)
        row = normalizer.normalize(orjson.dumps(event), 0, offset, now)
        assert not isinstance(row, Rejection), row
        rows.setdefault(normalizer.table.name, []).append(row)
    with psycopg.connect(settings.database_url) as conn:
        for table, table_rows in rows.items():
            statement = sql.SQL("copy {} ({}) from stdin").format(
                sql.Identifier("raw", table),
                sql.SQL(", ").join(map(sql.Identifier, TABLES[table].columns)),
            )
            with conn.cursor().copy(statement) as copy:
                for row in table_rows:
                    copy.write_row(row)


def run_dbt(db: AccessDb, *args: str) -> None:
    """``dbt ARGS`` on this module's database, with target and logs of its own (other tests may
    run dbt in the same project directory at the same time)."""
    env = {**os.environ, "LLMHUB_DB_NAME": DATABASE}
    paths = ["--target-path", str(db.dbt_dir / "target"), "--log-path", str(db.dbt_dir / "logs")]
    result = subprocess.run(
        [str(DBT), *args, "--profiles-dir", ".", *paths],
        cwd=DBT_PROJECT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"dbt {' '.join(args)} failed:\n{result.stdout[-5000:]}"


def _drop_database(admin_url: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(DATABASE))
        )


@pytest.fixture(scope="module")
def access_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AccessDb]:
    base = load_settings()
    admin_url = with_database(base.database_url, "postgres")
    try:
        _drop_database(admin_url)
    except psycopg.OperationalError as exc:
        message = f"TimescaleDB at {redact(base.database_url)} unreachable: {exc}"
        if os.environ.get("LLMHUB_REQUIRE_STACK") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    run = f"llmhub_t{uuid.uuid4().hex[:8]}"
    db = AccessDb(
        settings=replace(base, database_url=with_database(base.database_url, DATABASE)),
        run=run,
        dbt_dir=tmp_path_factory.mktemp("dbt"),
        tenant_a_group=f"{run}_tenant_a",
        tenant_a_reader=f"{run}_tenant_a_reader",
        tenant_b_reader=f"{run}_tenant_b_reader",
        analyst_reader=f"{run}_analyst_reader",
        no_tenant_reader=f"{run}_no_tenant_reader",
    )
    roles = [
        db.tenant_a_reader,
        db.tenant_b_reader,
        db.analyst_reader,
        db.no_tenant_reader,
        db.tenant_a_group,
    ]
    try:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(DATABASE)))
        migrate(db.settings)
        now = datetime.now(UTC)
        _insert_raw(db.settings, _tenant_events(TENANT_A, now) + _tenant_events(TENANT_B, now))
        run_dbt(db, "build")
        with db.connect() as conn:
            role = sql.Identifier
            conn.execute(sql.SQL("create role {} nologin").format(role(db.tenant_a_group)))
            conn.execute(
                sql.SQL("create role {} login in role {}").format(
                    role(db.tenant_a_reader), role(db.tenant_a_group)
                )
            )
            for name in (db.tenant_b_reader, db.no_tenant_reader):
                conn.execute(sql.SQL("create role {} login").format(role(name)))
            conn.execute(
                sql.SQL("create role {} login in role analyst").format(role(db.analyst_reader))
            )
            grant = "select marts_access.grant_tenant(%s, %s)"
            conn.execute(grant, (db.tenant_a_group, TENANT_A))
            conn.execute(grant, (db.tenant_b_reader, TENANT_B))
            conn.execute(sql.SQL("grant tenant_analyst to {}").format(role(db.no_tenant_reader)))
        yield db
    finally:
        _drop_database(admin_url)
        with psycopg.connect(admin_url, autocommit=True) as conn:
            for name in roles:
                conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(name)))


def tenant_counts(conn: psycopg.Connection, mart: str) -> dict[str, int]:
    rows = conn.execute(
        sql.SQL("select tenant_id, count(*) from {} group by tenant_id").format(
            sql.Identifier("marts", mart)
        )
    ).fetchall()
    return dict(rows)


@pytest.fixture(scope="module")
def owner_counts(access_db: AccessDb) -> dict[str, dict[str, int]]:
    """Rows per tenant of every mart, as the owner (who is not subject to the policies)."""
    with access_db.connect() as conn:
        counts = {mart: tenant_counts(conn, mart) for mart in MARTS}
    for mart, by_tenant in counts.items():
        # Every mart holds both tenants, so "reads only A" is a real restriction everywhere.
        assert by_tenant.get(TENANT_A, 0) > 0 and by_tenant.get(TENANT_B, 0) > 0, (mart, by_tenant)
    return counts


def test_every_mart_has_row_level_security(access_db: AccessDb) -> None:
    with access_db.connect() as conn:
        rows = conn.execute(
            """
            select c.relname, c.relrowsecurity, c.relforcerowsecurity,
                array_agg(p.polname order by p.polname)
            from pg_class as c left join pg_policy as p on p.polrelid = c.oid
            where c.relnamespace = 'marts'::regnamespace and c.relkind = 'r'
            group by c.relname, c.relrowsecurity, c.relforcerowsecurity
            """
        ).fetchall()
    assert {row[0] for row in rows} == {*MARTS, *EMPTY_MARTS}
    for name, enabled, forced, policies in rows:
        assert enabled and not forced, name
        assert policies == [
            "analyst_all_tenants",
            "llmhub_api_current_tenant",
            "tenant_analyst_granted_tenants",
        ], name


@pytest.mark.parametrize(("reader", "tenant"), [("a", TENANT_A), ("b", TENANT_B)])
def test_tenant_reader_reads_only_its_tenant(
    access_db: AccessDb, owner_counts: dict[str, dict[str, int]], reader: str, tenant: str
) -> None:
    role = access_db.tenant_a_reader if reader == "a" else access_db.tenant_b_reader
    with access_db.connect(role) as conn:
        for mart in MARTS:
            assert tenant_counts(conn, mart) == {tenant: owner_counts[mart][tenant]}, mart
        # Filtering for the other tenant explicitly finds nothing either.
        other = TENANT_B if tenant == TENANT_A else TENANT_A
        found = conn.execute(
            "select count(*) from marts.fct_llm_requests_hourly where tenant_id = %s", (other,)
        ).fetchone()
        assert found == (0,)
        assert conn.execute("select tenant_id from marts_access.current_tenants").fetchall() == [
            (tenant,)
        ]
        assert conn.execute("select count(*) from seeds.model_prices").fetchone()[0] > 0


@pytest.mark.parametrize("who", ["tenant_a_reader", "analyst_reader"])
def test_readers_cannot_read_raw_or_internal_tables(access_db: AccessDb, who: str) -> None:
    private = [sql.Identifier("raw", table) for table in (*RAW_TABLES, "kafka_offsets")]
    private += [
        sql.Identifier("staging", "stg_raw__llm_requests"),
        sql.Identifier("intermediate", "int_llm_requests_enriched"),
        sql.Identifier("public", "alembic_version"),
        sql.Identifier("marts_access", "tenant_grants"),
    ]
    with access_db.connect(getattr(access_db, who)) as conn:
        for table in private:
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(sql.SQL("select 1 from {} limit 1").format(table))


@pytest.mark.parametrize("who", ["tenant_a_reader", "analyst_reader"])
def test_readers_cannot_write_or_create(access_db: AccessDb, who: str) -> None:
    statements = [
        "insert into marts.fct_llm_cost_daily (llm_cost_day_key) values ('x')",
        "update marts.fct_llm_requests_daily set request_count = 0",
        "delete from marts.dim_assets",
        "truncate marts.fct_llm_requests_hourly",
        "update seeds.model_prices set input_usd_per_mtok = 0",
        "create table marts.scratch (x int)",
        "create table seeds.scratch (x int)",
        "create table public.scratch (x int)",
        "create view marts.scratch as select 1",
        "alter table marts.dim_assets disable row level security",
        "select marts_access.grant_tenant(current_user::text::regrole, 'tenant-b')",
        "insert into marts_access.tenant_grants values (current_user::text::regrole, 'tenant-b')",
    ]
    with access_db.connect(getattr(access_db, who)) as conn:
        for statement in statements:
            with pytest.raises((errors.InsufficientPrivilege, errors.ReadOnlySqlTransaction)):
                conn.execute(statement)


def test_analyst_reads_every_tenant(
    access_db: AccessDb, owner_counts: dict[str, dict[str, int]]
) -> None:
    with access_db.connect(access_db.analyst_reader) as conn:
        for mart in MARTS:
            assert tenant_counts(conn, mart) == owner_counts[mart], mart
        assert conn.execute("select count(*) from seeds.model_prices").fetchone()[0] > 0


def test_tenant_analyst_without_grants_reads_nothing(access_db: AccessDb) -> None:
    with access_db.connect(access_db.no_tenant_reader) as conn:
        for mart in MARTS:
            assert tenant_counts(conn, mart) == {}, mart


def test_policies_survive_a_full_refresh_and_an_incremental_run(
    access_db: AccessDb, owner_counts: dict[str, dict[str, int]]
) -> None:
    run_dbt(
        access_db, "run", "--full-refresh", "-s", "fct_llm_requests_hourly", "fct_llm_cost_daily"
    )
    run_dbt(access_db, "run", "-s", "fct_llm_requests_hourly")
    with access_db.connect(access_db.tenant_b_reader) as conn:
        for mart in ("fct_llm_requests_hourly", "fct_llm_cost_daily"):
            assert tenant_counts(conn, mart) == {TENANT_B: owner_counts[mart][TENANT_B]}, mart
    with access_db.connect(access_db.analyst_reader) as conn:
        assert tenant_counts(conn, "fct_llm_cost_daily") == owner_counts["fct_llm_cost_daily"]


def test_export_runs_under_the_callers_policies(access_db: AccessDb, tmp_path: Path) -> None:
    out = tmp_path / "hourly.csv"
    env = {**os.environ, "LLMHUB_DATABASE_URL": access_db.url(access_db.tenant_a_reader)}
    subprocess.run(
        [str(LLMHUB_CLI), "export", "--model", "fct_llm_requests_hourly", str(out)],
        env=env,
        check=True,
        capture_output=True,
    )
    lines = out.read_text().splitlines()
    tenant_column = lines[0].split(",").index("tenant_id")
    assert len(lines) > 1
    assert {line.split(",")[tenant_column] for line in lines[1:]} == {TENANT_A}


def test_revoking_the_last_tenant_removes_access(access_db: AccessDb) -> None:
    role = f"{access_db.run}_revoked_reader"
    with access_db.connect() as conn:
        conn.execute(sql.SQL("create role {} login").format(sql.Identifier(role)))
        try:
            conn.execute("select marts_access.grant_tenant(%s, %s)", (role, TENANT_B))
            with access_db.connect(role) as reader:
                assert set(tenant_counts(reader, "dim_assets")) == {TENANT_B}
            conn.execute("select marts_access.revoke_tenant(%s, %s)", (role, TENANT_B))
            member = conn.execute(
                "select pg_has_role(%s, 'tenant_analyst', 'member')", (role,)
            ).fetchone()
            assert member == (False,)
            with access_db.connect(role) as reader, pytest.raises(errors.InsufficientPrivilege):
                tenant_counts(reader, "dim_assets")
        finally:
            conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(role)))
