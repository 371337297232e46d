"""Incidents in the database: idempotent upsert, row-level security, feedback, the asset."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace

import dagster as dg
import pandas as pd
import psycopg
import pytest
from psycopg import sql
from rich.console import Console

from assets.incidents import incidents as incidents_asset
from assets.resources import HubResource
from llmhub.config import Settings
from llmhub.db import connect
from llmhub.incidents import store
from llmhub.incidents.report import print_incidents
from llmhub.producers.scenarios import detect_anomalies, generate_scenarios
from ml.correlation.engine import CorrelationResult, correlate
from ml.evaluation.correlation import grade_feedback


@pytest.fixture(scope="module")
def scenario() -> tuple[pd.DataFrame, CorrelationResult, pd.Timestamp]:
    data = generate_scenarios(1)
    anomalies = detect_anomalies(data.series, data.scenario_start)
    result = correlate(anomalies, data.events, data.providers, data.series, data.forecasts)
    return anomalies, result, data.scenario_start


@pytest.fixture
def conn(test_settings: Settings) -> Iterator[psycopg.Connection]:
    with connect(test_settings, autocommit=True) as c:
        c.execute("truncate analytics.incidents cascade")
        c.execute("truncate analytics.anomalies")
        yield c
        c.execute("truncate analytics.incidents cascade")
        c.execute("truncate analytics.anomalies")


def test_upsert_twice_updates_instead_of_duplicating(conn, scenario) -> None:
    _, result, since = scenario
    first = store.upsert_incidents(conn, result.incidents, since.to_pydatetime())
    second = store.upsert_incidents(conn, result.incidents, since.to_pydatetime())
    count = conn.execute("select count(*) from analytics.incidents").fetchone()[0]
    members = conn.execute("select count(*) from analytics.incident_members").fetchone()[0]
    assert (first.opened, first.updated) == (len(result.incidents), 0)
    assert (second.opened, second.updated) == (0, len(result.incidents))
    assert count == len(result.incidents)
    assert members == sum(len(i.members) for i in result.incidents) == first.members


@pytest.fixture
def tenant_reader(test_settings: Settings, conn) -> Iterator[tuple[str, str]]:
    role = f"llmhub_t{uuid.uuid4().hex[:8]}_incidents"
    tenant = "tenant-rls"
    conn.execute(sql.SQL("create role {} login").format(sql.Identifier(role)))
    conn.execute("select marts_access.grant_tenant(%s, %s)", (role, tenant))
    try:
        yield role, tenant
    finally:
        conn.execute("select marts_access.revoke_tenant(%s, %s)", (role, tenant))
        conn.execute("delete from analytics.incident_feedback where noted_by = %s", (role,))
        conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(role)))


def _as(conn: psycopg.Connection, role: str, query: str, params: tuple = ()) -> list[tuple]:
    with conn.transaction():
        conn.execute(sql.SQL("set local role {}").format(sql.Identifier(role)))
        return conn.execute(query, params).fetchall()


def test_tenant_analyst_sees_own_and_touching_incidents_only(conn, scenario, tenant_reader) -> None:
    _, result, since = scenario
    role, tenant = tenant_reader
    own, shared, other = (replace(i) for i in result.incidents[:3])
    own.incident_id, own.tenant_id, own.tenant_ids = "own", tenant, (tenant,)
    shared.incident_id, shared.tenant_id, shared.tenant_ids = "shared", "*", (tenant, "tenant-x")
    other.incident_id, other.tenant_id, other.tenant_ids = "other", "tenant-x", ("tenant-x",)
    store.upsert_incidents(conn, [own, shared, other], since.to_pydatetime())
    seen = _as(conn, role, "select incident_id from analytics.incidents order by 1")
    assert [r[0] for r in seen] == ["own", "shared"]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        _as(conn, role, "select tenant_ids from analytics.incidents")
    _as(
        conn,
        role,
        "insert into analytics.incident_feedback (incident_id, verdict) values "
        "('own', 'root_cause_right') returning noted_by",
    )
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        _as(
            conn,
            role,
            "insert into analytics.incident_feedback (incident_id, verdict) values "
            "('other', 'root_cause_wrong')",
        )
    assert store.feedback_summary(conn) == {"root_cause_right": 1}


def test_stored_feedback_grades_the_engine_on_marked_incidents(conn) -> None:
    # Seed 4's world has incidents with a runner-up cause (seed 1's lost its runners-up once a
    # change's shift had to show in its first hour): the analyst corrects one to its second.
    data = generate_scenarios(4)
    anomalies = detect_anomalies(data.series, data.scenario_start)
    result = correlate(anomalies, data.events, data.providers, data.series, data.forecasts)
    store.upsert_incidents(conn, result.incidents, data.scenario_start.to_pydatetime())
    wrong = next(i for i in result.incidents if len(i.candidates) > 1)
    right = next(i for i in result.incidents if i.incident_id != wrong.incident_id)
    second = wrong.candidates[1]
    conn.cursor().executemany(
        "insert into analytics.incident_feedback (incident_id, verdict, correct_cause_type, "
        "correct_cause_entity, noted_by) values (%s, %s, %s, %s, %s)",
        [
            (right.incident_id, "root_cause_right", None, None, "ann"),
            (wrong.incident_id, "root_cause_wrong", second.cause_type, second.entity, "ann"),
        ],
    )
    marks, incidents = store.read_feedback(conn)
    report = grade_feedback(marks, incidents)
    assert set(incidents["incident_id"]) == {right.incident_id, wrong.incident_id}
    assert (report.marked, report.confirmed, report.rejected, report.corrected) == (2, 1, 1, 1)
    assert (report.ac1, report.ac3) == (0.5, 1.0)


def test_asset_writes_incidents_from_stored_anomalies(test_settings, conn, scenario) -> None:
    anomalies, _, _ = scenario
    flagged = anomalies[anomalies["is_anomaly"]]
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
            float(r.score),
            True,
            "robust_z",
            "stand-in",
            "1",
        )
        for r in flagged.itertuples(index=False)
    ]
    with conn.cursor() as cur:
        cur.executemany(
            "insert into analytics.anomalies (bucket_at, tenant_id, asset_id, request_model, "
            "metric, observed, expected, deviation, score, is_anomaly, detector, model_name, "
            "model_version) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )
    hub = HubResource(database_url=test_settings.database_url, kafka_bootstrap="127.0.0.1:1")
    config = {"ops": {"incidents": {"config": {"lookback_hours": 24 * 30}}}}
    for _ in range(2):
        outcome = dg.materialize([incidents_asset], resources={"hub": hub}, run_config=config)
        assert outcome.success
    metadata = outcome.asset_materializations_for_node("incidents")[0].metadata
    stored = conn.execute("select count(*) from analytics.incidents").fetchone()[0]
    assert metadata["opened"].value == 0 and metadata["updated"].value == stored > 0


def test_demo_report_prints_the_run_incidents(conn, scenario) -> None:
    _, result, since = scenario
    before = conn.execute("select now()").fetchone()[0]
    store.upsert_incidents(conn, result.incidents, since.to_pydatetime())
    console = Console(record=True, width=200)
    shown = print_incidents(conn, before, console)
    text = console.export_text()
    assert shown == min(10, len(result.incidents))
    assert result.incidents[0].root_cause_type in text
