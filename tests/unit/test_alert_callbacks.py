"""Signature checks and payload parsing of the Slack and PagerDuty callbacks."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import pytest

from llmhub.alerts.callbacks import (
    BadSignature,
    pagerduty_actions,
    pagerduty_signature,
    slack_actions,
    slack_signature,
    verify_pagerduty,
    verify_slack,
)
from llmhub.alerts.channels import Delivery, render_slack

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def slack_body(action_id: str = "llmhub_ack:0", value: str = "inc-1") -> bytes:
    payload = {
        "type": "block_actions",
        "user": {"id": "U1", "username": "ana"},
        "actions": [{"action_id": action_id, "value": value, "type": "button"}],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def slack_headers(body: bytes, stamp: int, secret: str = SECRET) -> dict[str, str]:
    return {
        "x-slack-request-timestamp": str(stamp),
        "x-slack-signature": slack_signature(secret, str(stamp), body),
    }


def test_slack_signature_accepts_fresh_signed_requests_only() -> None:
    body, now = slack_body(), int(time.time())
    verify_slack(SECRET, slack_headers(body, now), body, now=now)
    with pytest.raises(BadSignature):
        verify_slack(SECRET, slack_headers(body, now), body + b"x", now=now)
    with pytest.raises(BadSignature):
        verify_slack(SECRET, slack_headers(body, now, "other"), body, now=now)
    # A correctly signed request replayed ten minutes later is refused.
    with pytest.raises(BadSignature):
        verify_slack(SECRET, slack_headers(body, now - 600), body, now=now)
    with pytest.raises(BadSignature):
        verify_slack(None, slack_headers(body, now), body, now=now)


def test_pagerduty_signature_accepts_any_of_the_rotated_secrets() -> None:
    body = b'{"event": {}}'
    good = pagerduty_signature(SECRET, body)
    verify_pagerduty(SECRET, {"x-pagerduty-signature": good}, body)
    rotated = f"{pagerduty_signature('old', body)}, {good}"
    verify_pagerduty(SECRET, {"x-pagerduty-signature": rotated}, body)
    for header in ({"x-pagerduty-signature": pagerduty_signature("old", body)}, {}):
        with pytest.raises(BadSignature):
            verify_pagerduty(SECRET, header, body)
    with pytest.raises(BadSignature):
        verify_pagerduty("", {"x-pagerduty-signature": good}, body)


def test_slack_ack_button_is_rendered_and_parsed() -> None:
    payload = {
        "key": "inc-7",
        "title": "t",
        "summary": "s",
        "severity": "error",
        "tenant_id": "acme",
        "source": "incident",
    }
    blocks = render_slack(Delivery("slack", "trigger", ("k",), (payload,), {}))["blocks"]
    button = blocks[-1]["elements"][-1]
    assert button["action_id"] == "llmhub_ack:0" and button["value"] == "inc-7"
    resolved = render_slack(Delivery("slack", "resolve", ("k",), (payload,), {}))["blocks"]
    assert all(b["type"] != "actions" for b in resolved)
    actions = slack_actions(slack_body(button["action_id"], button["value"]))
    assert [(a.verb, a.alert_key, a.by) for a in actions] == [("acknowledge", "inc-7", "slack:ana")]
    assert slack_actions(slack_body("other_button")) == []


@pytest.mark.parametrize(
    ("event_type", "verb"),
    [("incident.acknowledged", "acknowledge"), ("incident.resolved", "resolve")],
)
def test_pagerduty_incident_events_map_to_hub_actions(event_type: str, verb: str) -> None:
    body = json.dumps(
        {
            "event": {
                "event_type": event_type,
                "agent": {"summary": "Ana Oncall"},
                "data": {"type": "incident", "incident_key": "llmhub:inc-1"},
            }
        }
    ).encode()
    (action,) = pagerduty_actions(body)
    assert (action.verb, action.dedup_key, action.by) == (
        verb,
        "llmhub:inc-1",
        "pagerduty:Ana Oncall",
    )


def test_pagerduty_other_events_do_nothing() -> None:
    body = json.dumps({"event": {"event_type": "incident.annotated", "data": {}}}).encode()
    assert pagerduty_actions(body) == []
