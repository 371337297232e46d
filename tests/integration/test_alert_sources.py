"""Alert sources and the Dagster alert assets on the real database: the predictive budget
alert (told once, again only when the breach moves materially earlier), spend burn rate,
anomaly series, and the outbox/delivery assets with their check."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import psycopg
import pytest
from psycopg.types.json import Jsonb

from assets.alerts import alert_deliveries, alert_outbox, notifications_delivered
from assets.resources import HubResource
from llmhub.alerts.receiver import RecordingHTTPServer
from llmhub.alerts.sender import Sender
from llmhub.alerts.sources import (
    AnomalySource,
    BudgetBreachSource,
    DeploySource,
    IncidentSource,
    SpendBurnSource,
)
from llmhub.alerts.store import evaluate
from llmhub.config import Settings

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 5, 10, tzinfo=UTC)
TABLES = (
    "alerting.delivery_attempts",
    "alerting.outbox",
    "alerting.alert_state",
    "alerting.routes",
    "analytics.budget_projections",
    "analytics.budgets",
    "analytics.anomalies",
    "raw.llm_requests",
)


@pytest.fixture
def db(test_settings: Settings) -> Iterator[psycopg.Connection]:
    conn = psycopg.connect(test_settings.database_url, autocommit=True)
    yield conn
    conn.execute("truncate " + ", ".join(TABLES) + " cascade")
    conn.close()


@pytest.fixture
def hook(db: psycopg.Connection) -> Iterator[RecordingHTTPServer]:
    with RecordingHTTPServer() as http:
        db.execute(
            "insert into alerting.routes (tenant_id, channel, channel_config, group_wait_s, "
            "group_by) values ('*', 'webhook', %s, 0, '{key}')",
            (Jsonb({"endpoint": http.url("/hook")}),),
        )
        yield http


def project(db: psycopg.Connection, projected_on: date, breach: date | None) -> None:
    db.execute(
        "insert into analytics.budget_projections (tenant_id, asset_id, month, projected_on, "
        "budget_usd, month_to_date_usd, projected_month_end_usd, projected_lower_usd, "
        "projected_upper_usd, breach_date, model_name, model_version) values "
        "('acme', '*', '2026-12-01', %s, 1000, 300, 1400, 1200, 1600, %s, 'm', '1')",
        (projected_on, breach),
    )


def keys_sent(db: psycopg.Connection) -> list[tuple[str, str]]:
    return db.execute(
        "select event, payload -> 'details' ->> 'breach_date' from alerting.outbox "
        "order by created_at, notification_key"
    ).fetchall()


def test_budget_breach_told_once_and_again_only_when_materially_earlier(db, hook):
    source = [BudgetBreachSource()]
    project(db, date(2026, 12, 5), date(2026, 12, 25))
    evaluate(db, source, now=NOW)
    evaluate(db, source, now=NOW + timedelta(minutes=5))  # same projection: nothing new
    project(db, date(2026, 12, 6), date(2026, 12, 23))  # 2 days of a 19-day lead: not material
    evaluate(db, source, now=NOW + timedelta(days=1))
    project(db, date(2026, 12, 7), date(2026, 12, 17))  # 8 days earlier: material
    evaluate(db, source, now=NOW + timedelta(days=2))
    project(db, date(2026, 12, 8), None)  # no longer projected to breach
    evaluate(db, source, now=NOW + timedelta(days=3))
    assert keys_sent(db) == [
        ("trigger", "2026-12-25"),
        ("trigger", "2026-12-17"),
        ("resolve", "2026-12-17"),
    ]


def insert_requests(db: psycopg.Connection, rows: list[tuple[datetime, float, str]]) -> None:
    with db.cursor() as cur:
        cur.executemany(
            "insert into raw.llm_requests (event_id, occurred_at, tenant_id, asset_id, event_type, "
            "source_module, severity, schema_version, operation_name, provider, request_model, "
            "status, input_tokens, output_tokens, cache_read_tokens, latency_ms, cost_usd, "
            "kafka_partition, kafka_offset) values (%s, %s, 'acme', 'app-chat', 'llm_request', "
            "'telemetry', 'info', '1.0', 'chat', 'openai', 'gpt-4o', %s, 10, 10, 0, 300, %s, 0, "
            "%s)",
            [(uuid.uuid4(), at, status, cost, i) for i, (at, cost, status) in enumerate(rows)],
        )


def test_spend_burn_pages_on_the_fast_window_only_while_the_short_window_burns(db, hook):
    # $3100 over 31 days is $100 a day (~$4.17 an hour): $80 in the last hour is ~19x.
    db.execute(
        "insert into analytics.budgets (tenant_id, monthly_budget_usd) values ('acme', 3100)"
    )
    insert_requests(db, [(NOW - timedelta(minutes=m), 2.0, "ok") for m in range(1, 41)])
    [fast] = SpendBurnSource().fetch(db, NOW, {})
    assert fast.key == "spend_burn:acme:fast" and fast.severity == "critical"
    assert fast.details["burn_rate_long"] == pytest.approx(80 / (3100 / 31 / 24), rel=1e-3)
    # Twenty minutes later the last 5 minutes are quiet: the short window stops the page.
    assert SpendBurnSource().fetch(db, NOW + timedelta(minutes=20), {}) == []


def test_anomaly_source_alerts_once_per_series_and_resolves_when_quiet(db, hook):
    for hours_ago in (1, 2):
        db.execute(
            "insert into analytics.anomalies (bucket_at, tenant_id, asset_id, request_model, "
            "metric, observed, expected, deviation, score, is_anomaly, detector, model_name, "
            "model_version) values (%s, 'acme', 'app-chat', 'gpt-4o', 'error_rate', 0.2, 0.01, "
            "0.19, 0.995, true, 'fleet', 'det', '3')",
            (NOW - timedelta(hours=hours_ago),),
        )
    source = [AnomalySource()]
    evaluate(db, source, now=NOW)
    evaluate(db, source, now=NOW + timedelta(minutes=10))
    evaluate(db, source, now=NOW + timedelta(hours=5))  # no anomaly in the last 3 h: resolved
    events = [e for e, _ in keys_sent(db)]
    assert events == ["trigger", "resolve"]


def test_alert_assets_report_sends_per_channel_and_warn_on_failures(db, hook, test_settings):
    hook.script("/hook", 400, times=1)
    project(db, datetime.now(UTC).date(), datetime.now(UTC).date() + timedelta(days=2))
    db.execute("update analytics.budget_projections set month = date_trunc('month', now())::date")
    hub = HubResource(database_url=test_settings.database_url, kafka_bootstrap="unused:9092")
    result = dg.materialize(
        [alert_outbox, alert_deliveries, notifications_delivered],
        resources={"hub": hub},
        run_config={"ops": {"alerting__delivery_attempts": {"config": {"wait_s": 0}}}},
    )
    assert result.success
    outbox_meta = result.asset_materializations_for_node("alerting__outbox")[0].metadata
    assert outbox_meta["notifications_enqueued"].value == 1
    sent_meta = result.asset_materializations_for_node("alerting__delivery_attempts")[0].metadata
    assert sent_meta["failures_per_channel"].value == {"webhook": 1}
    [check] = result.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["failed_per_channel"].value == {"webhook": 1}


INSERT_INCIDENT = """
insert into analytics.incidents (
    incident_id, tenant_id, tenant_ids, asset_ids, opened_at, last_seen_at, status, severity,
    root_cause_type, root_cause_entity, confidence, candidates, impact_score, affected_requests,
    excess_cost_usd, excess_volume_usd, excess_tokens_per_request_usd, excess_price_mix_usd,
    cost_baseline, explanation, rules, signature, member_count
) values (
    'inc-42', 'acme', '{acme}', '{app-chat}', %(opened)s, %(opened)s, 'open', 'high', 'model',
    'gpt-4o', 0.9, '[]', 71, 1200, 3.5, 0, 3.5, 0, 'flat', 'gpt-4o latency 4x', '{}', 'sig', 3
)
"""


def test_incident_lifecycle_reaches_pagerduty_with_the_incident_id(db, test_settings, monkeypatch):
    monkeypatch.setenv("TEST_PD", "rk")
    now = datetime.now(UTC)  # the sender sends what is due by the clock
    with RecordingHTTPServer() as http:
        db.execute(
            "insert into alerting.routes (tenant_id, channel, channel_config, secret_ref, "
            "group_wait_s) values ('acme', 'pagerduty', %s, 'env:TEST_PD', 0)",
            (Jsonb({"events_url": http.url("/pd")}),),
        )
        db.execute(INSERT_INCIDENT, {"opened": now - timedelta(minutes=20)})
        source = [IncidentSource()]
        evaluate(db, source, now=now)
        db.execute("update analytics.incidents set impact_score = 80")  # not news
        evaluate(db, source, now=now + timedelta(seconds=1))
        db.execute(
            "update analytics.incidents set status = 'resolved', resolved_at = %s",
            (now + timedelta(seconds=2),),
        )
        evaluate(db, source, now=now + timedelta(seconds=3))
        sender = Sender(test_settings.database_url)
        sender.drain(wait_up_to_s=5)
        sender.close()
        events = [(r.body["event_action"], r.body["dedup_key"]) for r in http.accepted("/pd")]
        assert events == [
            ("trigger", "llmhub:incident:inc-42"),
            ("resolve", "llmhub:incident:inc-42"),
        ]
        assert http.accepted("/pd")[0].body["payload"]["severity"] == "error"
    db.execute("delete from analytics.incidents where incident_id = 'inc-42'")


def test_cross_tenant_incident_reaches_each_touched_tenant(db):
    # A provider outage (tenant '*') touching acme and globex: acme's route hears of it under
    # a key of its own; tenant 'other', untouched, does not.
    db.execute(
        "insert into alerting.routes (tenant_id, channel, channel_config, group_wait_s) "
        "values ('acme', 'webhook', %s, 0), ('other', 'webhook', %s, 0)",
        (Jsonb({"endpoint": "http://127.0.0.1:9/a"}), Jsonb({"endpoint": "http://127.0.0.1:9/o"})),
    )
    db.execute(
        INSERT_INCIDENT.replace("'inc-42', 'acme', '{acme}'", "'inc-43', '*', '{acme,globex}'"),
        {"opened": NOW - timedelta(minutes=20)},
    )
    evaluate(db, [IncidentSource()], now=NOW)
    rows = db.execute("select tenant_id, alert_key from alerting.outbox").fetchall()
    assert rows == [("acme", "incident:inc-43:acme")]
    db.execute("delete from analytics.incidents where incident_id = 'inc-43'")


def test_registry_deploy_is_a_pagerduty_change_event(db, test_settings, monkeypatch):
    monkeypatch.setenv("TEST_PD", "rk")
    now = datetime.now(UTC)
    with RecordingHTTPServer() as http:
        db.execute(
            "insert into alerting.routes (tenant_id, channel, channel_config, secret_ref, "
            "group_wait_s) values ('acme', 'pagerduty', %s, 'env:TEST_PD', 0)",
            (Jsonb({"change_url": http.url("/change")}),),
        )
        db.execute(
            "insert into raw.registry_events (event_id, occurred_at, tenant_id, asset_id, "
            "event_type, source_module, severity, schema_version, asset_kind, name, version, "
            "owner, lifecycle_status, kafka_partition, kafka_offset) values (%s, %s, 'acme', "
            "'app-chat', 'asset_updated', 'registry', 'info', '1.0', 'application', 'Chat', "
            "'2.4.0', 'platform-team', 'active', 0, 0)",
            (uuid.uuid4(), now - timedelta(minutes=3)),
        )
        evaluate(db, [DeploySource()], now=now)
        evaluate(db, [DeploySource()], now=now + timedelta(seconds=1))
        sender = Sender(test_settings.database_url)
        sender.drain()
        sender.close()
        [change] = [r.body for r in http.accepted("/change")]
        assert "event_action" not in change and change["routing_key"] == "rk"
        assert change["payload"]["summary"] == "application Chat 2.4.0 updated (app-chat)"
    db.execute("truncate raw.registry_events")
