"""Alert delivery against real local receivers (HTTP + SMTP) and the real database: the
PagerDuty lifecycle, Retry-After, permanent errors, a SIGKILLed sender, silences and quiet
hours, and secrets kept out of the database and the logs."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from integration.conftest import wait_for
from llmhub.alerts.model import Alertable
from llmhub.alerts.receiver import RecordingHTTPServer, RecordingSMTPServer
from llmhub.alerts.sender import DEFAULT_CONCURRENCY, Sender
from llmhub.alerts.store import acknowledge, evaluate
from llmhub.config import Settings

pytestmark = pytest.mark.integration

LLMHUB_CLI = Path(sys.executable).with_name("llmhub")
SLACK_SECRET_PATH = "/slack/T0SECRET/B0SECRET/xoxsecrettoken"
PD_ROUTING_KEY = "R0UTINGKEYSECRET0000000000000000"
HMAC_SECRET = "hmac-secret-value-42"
ALERTING_TABLES = (
    "delivery_attempts",
    "outbox",
    "alert_state",
    "silences",
    "mute_windows",
    "routes",
    "slo_objectives",
)


@pytest.fixture
def db(test_settings: Settings) -> Iterator[psycopg.Connection]:
    conn = psycopg.connect(test_settings.database_url, autocommit=True)
    yield conn
    conn.execute("truncate " + ", ".join(f"alerting.{t}" for t in ALERTING_TABLES) + " cascade")
    conn.close()


@pytest.fixture
def http() -> Iterator[RecordingHTTPServer]:
    with RecordingHTTPServer() as server:
        yield server


@pytest.fixture
def secrets(http: RecordingHTTPServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "TEST_SLACK_WEBHOOK": http.url(SLACK_SECRET_PATH),
        "TEST_PD_KEY": PD_ROUTING_KEY,
        "TEST_WEBHOOK_HMAC": HMAC_SECRET,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def add_route(conn: psycopg.Connection, channel: str, secret_ref: str | None, **kw) -> int:
    return conn.execute(
        "insert into alerting.routes (tenant_id, channel, channel_config, secret_ref, group_by, "
        "group_wait_s, repeat_interval_s, severities) values (%s, %s, %s, %s, %s, %s, %s, %s) "
        "returning route_id",
        (
            kw.get("tenant", "acme"),
            channel,
            Jsonb(kw.get("config", {})),
            secret_ref,
            kw.get("group_by", ["tenant_id", "source"]),
            kw.get("group_wait_s", 0),
            kw.get("repeat_interval_s", 3600),
            kw.get("severities"),
        ),
    ).fetchone()[0]


def alert(key: str = "inc-1", **kw) -> Alertable:
    fields = {
        "key": key,
        "tenant_id": "acme",
        "source": "incident",
        "severity": "error",
        "status": "firing",
        "title": f"Error rate up for chat ({key})",
        "summary": "error rate 12% against 1% expected",
        "occurred_at": datetime(2026, 11, 29, 12, tzinfo=UTC),
        "application": "app-chat",
    }
    fields.update(kw)
    return Alertable(**fields)


def drain(settings: Settings, **kw) -> Sender:
    wait = kw.pop("wait", 5.0)
    sender = Sender(settings.database_url, base_backoff_s=kw.pop("base_backoff_s", 0.05), **kw)
    try:
        sender.drain(wait_up_to_s=wait)
    finally:
        sender.close()
    return sender


def test_pagerduty_lifecycle_trigger_acknowledge_resolve_with_one_dedup_key(
    db, http, secrets, test_settings
):
    add_route(
        db, "pagerduty", "env:TEST_PD_KEY", config={"events_url": http.url("/pagerduty/v2/enqueue")}
    )
    evaluate(db, alerts=[alert()])
    drain(test_settings)
    # Re-evaluating an unchanged firing alert sends nothing new.
    evaluate(db, alerts=[alert()])
    drain(test_settings)
    with db.transaction():
        assert acknowledge(db, "inc-1", "oncall") == 1
    drain(test_settings)
    evaluate(db, alerts=[alert(status="resolved", resolved_at=datetime.now(UTC))])
    drain(test_settings)

    events = [r.body for r in http.accepted("/pagerduty/v2/enqueue")]
    assert [e["event_action"] for e in events] == ["trigger", "acknowledge", "resolve"]
    assert {e["dedup_key"] for e in events} == {"llmhub:inc-1"}
    assert {e["routing_key"] for e in events} == {PD_ROUTING_KEY}
    assert events[0]["payload"]["severity"] == "error"
    mtta = db.execute(
        "select acked_at is not null, resolved_at is not null from alerting.outbox "
        "where event = 'trigger'"
    ).fetchall()
    assert mtta == [(True, True)]


def test_retry_after_429_is_waited_for(db, http, secrets, test_settings):
    add_route(db, "slack", "env:TEST_SLACK_WEBHOOK")
    http.script(SLACK_SECRET_PATH, 429, headers={"Retry-After": "1"}, body="rate_limited")
    evaluate(db, alerts=[alert()])
    drain(test_settings)

    attempts = db.execute(
        "select outcome, http_status, retry_after_s, started_at, finished_at "
        "from alerting.delivery_attempts order by attempt"
    ).fetchall()
    assert [(a[0], a[1]) for a in attempts] == [("retry", 429), ("sent", 200)]
    assert attempts[0][2] == 1.0
    assert attempts[1][3] - attempts[0][4] >= timedelta(seconds=1)
    assert len(http.accepted()) == 1
    blocks = http.accepted()[0].body["blocks"]
    assert blocks[0]["type"] == "header" and blocks[1]["type"] == "section"


def test_permanent_4xx_is_not_retried_and_5xx_gives_up_visibly(db, http, secrets, test_settings):
    add_route(db, "slack", "env:TEST_SLACK_WEBHOOK")
    add_route(db, "webhook", "env:TEST_WEBHOOK_HMAC", config={"endpoint": http.url("/hook")})
    http.script(SLACK_SECRET_PATH, 410, body="channel_is_archived")
    http.script("/hook", 503, times=10)
    evaluate(db, alerts=[alert()])
    drain(test_settings, max_attempts=3)

    rows = dict(
        (channel, (status, attempts, error))
        for channel, status, attempts, error in db.execute(
            "select channel, status, attempts, last_error from alerting.outbox"
        ).fetchall()
    )
    assert rows["slack"] == ("failed", 1, "channel_is_archived")
    assert rows["webhook"][:2] == ("failed", 3)
    outcomes = [
        r[0]
        for r in db.execute(
            "select outcome from alerting.delivery_attempts where channel = 'webhook' "
            "order by attempt"
        ).fetchall()
    ]
    assert outcomes == ["retry", "retry", "gave_up"]
    assert len([r for r in http.requests if r.path == SLACK_SECRET_PATH]) == 1


def test_sigkilled_sender_loses_and_duplicates_nothing_committed(db, secrets, test_settings):
    with RecordingHTTPServer(delay_s=0.01) as http:
        add_route(
            db,
            "webhook",
            "env:TEST_WEBHOOK_HMAC",
            config={"endpoint": http.url("/hook")},
            group_by=["key"],
        )
        evaluate(db, alerts=[alert(f"inc-{i:04d}") for i in range(300)])
        env = {
            **os.environ,
            "LLMHUB_DATABASE_URL": test_settings.database_url,
            "TEST_WEBHOOK_HMAC": HMAC_SECRET,
        }
        proc = subprocess.Popen(
            [str(LLMHUB_CLI), "alerts", "send"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(lambda: len(http.accepted()) >= 60 or proc.poll() is not None, "60 deliveries")
            assert proc.poll() is None, "the sender finished before it could be killed"
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
        committed = {
            r[0]
            for r in db.execute(
                "select notification_key from alerting.outbox where status = 'sent'"
            ).fetchall()
        }
        received_before = Counter(k for r in http.accepted() for k in r.keys)
        # Nothing committed as sent was lost: the receiver has every one of them.
        assert committed and committed <= set(received_before)
        assert len(committed) < 300
        seen_at_kill = len(http.requests)

        drain(test_settings)

        outbox = dict(db.execute("select notification_key, status from alerting.outbox").fetchall())
        assert set(outbox.values()) == {"sent"} and len(outbox) == 300
        received = Counter(k for r in http.accepted() for k in r.keys)
        assert set(received) == set(outbox)
        after_restart = Counter(k for r in http.requests[seen_at_kill:] for k in r.keys)
        # Nothing committed before the kill was sent again.
        assert not committed & set(after_restart)
        # At most the deliveries in flight at the kill (one per sender thread) reached the
        # receiver twice.
        assert sum(1 for count in received.values() if count > 1) <= DEFAULT_CONCURRENCY


def test_lifecycle_events_of_one_incident_leave_in_order(db, secrets, test_settings):
    # Concurrent sender threads sent a queued acknowledge and resolve side by side: PagerDuty
    # could hear the resolve before the acknowledge (or the trigger).
    with RecordingHTTPServer(delay_s=0.2) as http:
        add_route(
            db,
            "pagerduty",
            "env:TEST_PD_KEY",
            config={"events_url": http.url("/pd"), "max_in_flight": 16},
        )
        keys = [f"inc-{i}" for i in range(3)]
        evaluate(db, alerts=[alert(k) for k in keys])
        for key in keys:
            acknowledge(db, key, "oncall")
        evaluate(
            db, alerts=[alert(k, status="resolved", resolved_at=datetime.now(UTC)) for k in keys]
        )
        drain(test_settings)
        per_incident: dict[str, list[str]] = {}
        for request in http.accepted("/pd"):
            per_incident.setdefault(request.body["dedup_key"], []).append(
                request.body["event_action"]
            )
        assert len(per_incident) == len(keys)
        assert set(map(tuple, per_incident.values())) == {("trigger", "acknowledge", "resolve")}


def test_silences_and_quiet_hours_hold(db, http, secrets, test_settings):
    add_route(
        db,
        "webhook",
        "env:TEST_WEBHOOK_HMAC",
        config={"endpoint": http.url("/hook")},
        group_by=["key"],
    )
    silence = db.execute(
        "insert into alerting.silences (tenant_id, matchers, comment, created_by, ends_at) "
        "values ('acme', %s, 'deploying', 'alice', now() + interval '1 hour') returning silence_id",
        (Jsonb({"source": "incident", "key": "inc-silenced*"}),),
    ).fetchone()[0]
    now = datetime.now(UTC)
    db.execute(
        "insert into alerting.mute_windows (tenant_id, name, kind, start_local, end_local, "
        "timezone) values ('acme', 'nights', 'quiet_hours', %s, %s, 'UTC')",
        ((now - timedelta(minutes=30)).time(), (now + timedelta(minutes=30)).time()),
    )
    report = evaluate(
        db,
        alerts=[
            alert("inc-silenced-1", severity="critical"),
            alert("inc-quiet", severity="warning"),
            alert("inc-page", severity="critical"),
        ],
    )
    drain(test_settings)
    delivered = {a["key"] for r in http.accepted() for a in r.body["alerts"]}
    assert delivered == {"inc-page"}  # critical bypasses quiet hours, not silences
    assert {(s.alert_key, s.reason.split()[0]) for s in report.suppressed} == {
        ("inc-silenced-1", "silence"),
        ("inc-quiet", "quiet_hours"),
    }
    # The silence expires (and quiet hours end): the still-firing alert is announced then.
    db.execute("update alerting.silences set ends_at = now() where silence_id = %s", (silence,))
    db.execute("delete from alerting.mute_windows")
    evaluate(
        db,
        alerts=[
            alert("inc-silenced-1", severity="critical"),
            alert("inc-quiet", severity="warning"),
        ],
    )
    drain(test_settings)
    delivered = [a["key"] for r in http.accepted() for a in r.body["alerts"]]
    assert sorted(delivered) == ["inc-page", "inc-quiet", "inc-silenced-1"]


def test_webhook_signature_and_email_parts(db, http, secrets, test_settings):
    with RecordingSMTPServer() as smtp:
        add_route(db, "webhook", "env:TEST_WEBHOOK_HMAC", config={"endpoint": http.url("/hook")})
        add_route(
            db,
            "email",
            None,
            config={"host": "127.0.0.1", "port": smtp.port, "to": ["oncall@example.com"]},
        )
        evaluate(db, alerts=[alert()])
        drain(test_settings)
        [request] = http.accepted("/hook")
        stamp = request.headers["x-llmhub-timestamp"]
        expected = hmac.new(
            HMAC_SECRET.encode(), stamp.encode() + b"." + request.raw, hashlib.sha256
        )
        assert request.headers["x-llmhub-signature"] == "sha256=" + expected.hexdigest()
        assert request.body["schema"] == "llmhub.alert" and request.body["schema_version"] == "1"
        [message] = smtp.messages
        kinds = sorted(
            part.get_content_type() for part in message.walk() if not part.is_multipart()
        )
        assert kinds == ["text/html", "text/plain"]
        assert message["To"] == "oncall@example.com"


def test_secrets_never_in_database_or_logs(db, http, secrets, test_settings, caplog):
    with pytest.raises(psycopg.errors.CheckViolation):
        add_route(db, "slack", None, config={"webhook_url": secrets["TEST_SLACK_WEBHOOK"]})
    add_route(db, "slack", "env:TEST_SLACK_WEBHOOK")
    add_route(db, "pagerduty", "env:TEST_PD_KEY", config={"events_url": http.url("/pd")})
    add_route(db, "webhook", "env:TEST_WEBHOOK_HMAC", config={"endpoint": http.url("/hook")})
    # Receivers that echo the secret back in their error bodies.
    http.script(SLACK_SECRET_PATH, 400, body=f"invalid_payload for {secrets['TEST_SLACK_WEBHOOK']}")
    http.script("/pd", 400, body=f"bad routing key {PD_ROUTING_KEY}")
    http.script("/hook", 500, body=f"cannot verify with {HMAC_SECRET}")
    caplog.set_level(logging.DEBUG)
    evaluate(db, alerts=[alert()])
    sender = drain(test_settings, max_attempts=2)

    dump = json.dumps(
        [
            db.execute(
                f"select coalesce(json_agg(t)::text, '') from alerting.{table} as t"  # noqa: S608
            ).fetchone()[0]
            for table in ALERTING_TABLES
        ]
    )
    reported = json.dumps(sender.report.to_dict())
    for secret in (SLACK_SECRET_PATH.split("/")[-1], PD_ROUTING_KEY, HMAC_SECRET):
        assert secret not in dump
        assert secret not in caplog.text
        assert secret not in reported
    assert "***" in dump  # the echoed secrets were scrubbed, not dropped with the error


def test_removing_a_route_keeps_the_attempts_of_a_pending_retry(db, http, secrets, test_settings):
    # `route rm` deleted a route whose only notification was a pending retry: the cascade took
    # its attempt history with it.
    route_id = add_route(db, "slack", "env:TEST_SLACK_WEBHOOK")
    http.script(SLACK_SECRET_PATH, 503)
    evaluate(db, alerts=[alert()])
    drain(test_settings, base_backoff_s=600.0, wait=0.0)
    assert db.execute("select status, attempts from alerting.outbox").fetchall() == [("pending", 1)]
    env = {**os.environ, "LLMHUB_DATABASE_URL": test_settings.database_url}
    subprocess.run(
        [str(LLMHUB_CLI), "alerts", "route", "rm", str(route_id)],
        env=env,
        check=True,
        capture_output=True,
    )
    assert db.execute("select status, last_error from alerting.outbox").fetchall() == [
        ("failed", "route removed")
    ]
    attempts = db.execute("select outcome, http_status from alerting.delivery_attempts").fetchall()
    assert attempts == [("retry", 503)]
