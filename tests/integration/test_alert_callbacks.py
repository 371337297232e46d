"""Acknowledge and resolve from Slack and PagerDuty: signed callbacks through the real router
change the alert in the real database and queue the lifecycle events the channels expect."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from integration.test_alerts import (  # noqa: F401 - fixtures
    PD_ROUTING_KEY,
    add_route,
    alert,
    db,
    drain,
    http,
    secrets,
)
from llmhub.alerts.callbacks import (
    PAGERDUTY_SECRET_ENV,
    SLACK_SECRET_ENV,
    pagerduty_signature,
    slack_signature,
)
from llmhub.alerts.store import evaluate
from llmhub.api import problems, routes_alert_callbacks

pytestmark = pytest.mark.integration

SLACK_SIGNING = "slack-signing-secret-0123"
PD_WEBHOOK = "pd-webhook-secret-4567"


@pytest.fixture
def client(test_settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv(SLACK_SECRET_ENV, SLACK_SIGNING)
    monkeypatch.setenv(PAGERDUTY_SECRET_ENV, PD_WEBHOOK)
    app = FastAPI()
    problems.install(app)
    app.include_router(routes_alert_callbacks.router)
    app.dependency_overrides[routes_alert_callbacks.database_url] = lambda: (
        test_settings.database_url
    )
    with TestClient(app) as c:
        yield c


def slack_click(client: TestClient, alert_key: str, secret: str = SLACK_SIGNING):
    payload = {
        "type": "block_actions",
        "user": {"id": "U42", "username": "ana"},
        "actions": [{"action_id": "llmhub_ack:0", "value": alert_key, "type": "button"}],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    stamp = str(int(time.time()))
    return client.post(
        "/api/v1/alerts/callbacks/slack",
        content=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": slack_signature(secret, stamp, body),
        },
    )


def pd_webhook(client: TestClient, event_type: str, dedup_key: str, secret: str = PD_WEBHOOK):
    body = json.dumps(
        {
            "event": {
                "id": "01ABC",
                "event_type": event_type,
                "resource_type": "incident",
                "occurred_at": "2026-11-29T12:05:00Z",
                "agent": {"type": "user_reference", "summary": "Ana Oncall"},
                "data": {"id": "Q1", "type": "incident", "incident_key": dedup_key},
            }
        }
    ).encode()
    return client.post(
        "/api/v1/alerts/callbacks/pagerduty",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-PagerDuty-Signature": pagerduty_signature(secret, body),
        },
    )


def state(conn, key: str) -> tuple:
    return conn.execute(
        "select status, acked_by, ack_source, resolved_by from alerting.alert_state "
        "where alert_key = %s",
        (key,),
    ).fetchone()


def test_slack_button_acknowledges_and_pagerduty_hears_it(
    db,  # noqa: F811
    http,  # noqa: F811
    secrets,  # noqa: F811
    test_settings,
    client,
):
    add_route(db, "slack", "env:TEST_SLACK_WEBHOOK")
    add_route(
        db, "pagerduty", "env:TEST_PD_KEY", config={"events_url": http.url("/pagerduty/v2/enqueue")}
    )
    evaluate(db, alerts=[alert()])
    drain(test_settings)

    forged = slack_click(client, "inc-1", secret="not-the-secret")
    assert forged.status_code == 401
    assert state(db, "inc-1") == ("firing", None, None, None)

    answer = slack_click(client, "inc-1")
    assert answer.status_code == 200
    assert answer.json()["applied"] == [{"verb": "acknowledge", "alert_key": "inc-1", "queued": 1}]
    assert state(db, "inc-1") == ("firing", "slack:ana", "slack", None)
    # A second click (a colleague, a retry by Slack) queues nothing more.
    assert slack_click(client, "inc-1").json()["applied"][0]["queued"] == 0
    drain(test_settings)
    events = [r.body for r in http.accepted("/pagerduty/v2/enqueue")]
    assert [e["event_action"] for e in events] == ["trigger", "acknowledge"]
    assert {e["routing_key"] for e in events} == {PD_ROUTING_KEY}


def test_pagerduty_webhook_acknowledges_then_resolves_everywhere(
    db,  # noqa: F811
    http,  # noqa: F811
    secrets,  # noqa: F811
    test_settings,
    client,
):
    add_route(db, "slack", "env:TEST_SLACK_WEBHOOK")
    add_route(
        db, "pagerduty", "env:TEST_PD_KEY", config={"events_url": http.url("/pagerduty/v2/enqueue")}
    )
    evaluate(db, alerts=[alert()])
    drain(test_settings)

    assert pd_webhook(client, "incident.acknowledged", "llmhub:inc-1", "wrong").status_code == 401
    assert state(db, "inc-1")[1] is None

    ack = pd_webhook(client, "incident.acknowledged", "llmhub:inc-1")
    assert ack.status_code == 200 and ack.json()["applied"][0]["alert_key"] == "inc-1"
    assert state(db, "inc-1") == ("firing", "pagerduty:Ana Oncall", "pagerduty", None)
    resolved = pd_webhook(client, "incident.resolved", "llmhub:inc-1")
    assert resolved.status_code == 200
    assert state(db, "inc-1") == (
        "resolved",
        "pagerduty:Ana Oncall",
        "pagerduty",
        "pagerduty:Ana Oncall",
    )
    unknown = pd_webhook(client, "incident.resolved", "llmhub:never-sent")
    assert unknown.json()["applied"] == [{"verb": "resolve", "alert_key": None, "queued": 0}]
    drain(test_settings)

    slack = [r.body["text"] for r in http.accepted() if r.path != "/pagerduty/v2/enqueue"]
    assert len(slack) == 2 and slack[1].startswith("[RESOLVED]")
    events = [r.body for r in http.accepted("/pagerduty/v2/enqueue")]
    assert [e["event_action"] for e in events] == ["trigger", "acknowledge", "resolve"]
    assert {e["dedup_key"] for e in events} == {"llmhub:inc-1"}
    triggers = db.execute(
        "select acked_at is not null, resolved_at is not null from alerting.outbox "
        "where event = 'trigger'"
    ).fetchall()
    assert triggers == [(True, True), (True, True)]
