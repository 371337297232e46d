"""Acknowledge and resolve from where on-call people are: Slack's interactive buttons and
PagerDuty's V3 webhooks, verified by their signatures before anything is believed.

- Slack signs ``v0:{X-Slack-Request-Timestamp}:{raw body}`` with the app's signing secret
  (HMAC-SHA256, ``X-Slack-Signature: v0=<hex>``); requests older than five minutes are refused
  (replay). The Acknowledge button of a notification (``llmhub_ack:<n>``, value: the alert key)
  acknowledges the alert.
- PagerDuty signs the raw body with the webhook subscription's secret (HMAC-SHA256,
  ``X-PagerDuty-Signature: v1=<hex>[,v1=<hex>...]``, several while a secret rotates).
  ``incident.acknowledged`` acknowledges the alert behind the incident's ``incident_key`` (the
  dedup key the hub sent), ``incident.resolved`` resolves it.

Secrets come from the environment (``LLMHUB_SLACK_SIGNING_SECRET``,
``LLMHUB_PAGERDUTY_WEBHOOK_SECRET``); an endpoint whose secret is unset refuses every request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import psycopg

from llmhub.alerts.channels import SLACK_ACK_ACTION, SecretError, resolve_secret
from llmhub.alerts.store import acknowledge, alert_for_dedup_key, resolve_by_hand

SLACK_SECRET_ENV = "LLMHUB_SLACK_SIGNING_SECRET"
PAGERDUTY_SECRET_ENV = "LLMHUB_PAGERDUTY_WEBHOOK_SECRET"
SLACK_MAX_SKEW_S = 300


class BadSignature(Exception):
    """The request is not signed with the configured secret (or is too old)."""


@dataclass(frozen=True)
class Action:
    """What a verified callback asks of the hub."""

    verb: str  # acknowledge | resolve
    alert_key: str | None  # None: resolve ``dedup_key`` first
    by: str
    source: str
    dedup_key: str | None = None


def signing_secret(variable: str) -> str | None:
    """A callback's signing secret, read when the request arrives (a rotation needs no
    restart); None when unset."""
    try:
        return resolve_secret(f"env:{variable}")
    except SecretError:
        return None


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256)
    return "v0=" + mac.hexdigest()


def verify_slack(
    secret: str | None, headers: Mapping[str, str], body: bytes, now: float | None = None
) -> None:
    """Raise ``BadSignature`` unless ``body`` carries a fresh, valid Slack signature."""
    if not secret:
        raise BadSignature(f"{SLACK_SECRET_ENV} is not set")
    stamp = headers.get("x-slack-request-timestamp", "")
    given = headers.get("x-slack-signature", "")
    try:
        age = abs((now if now is not None else time.time()) - int(stamp))
    except ValueError as exc:
        raise BadSignature("missing or malformed X-Slack-Request-Timestamp") from exc
    if age > SLACK_MAX_SKEW_S:
        raise BadSignature("stale Slack request (replayed?)")
    if not hmac.compare_digest(slack_signature(secret, stamp, body), given):
        raise BadSignature("Slack signature does not match")


def pagerduty_signature(secret: str, body: bytes) -> str:
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_pagerduty(secret: str | None, headers: Mapping[str, str], body: bytes) -> None:
    """Raise ``BadSignature`` unless one of the ``v1=`` signatures matches ``body``."""
    if not secret:
        raise BadSignature(f"{PAGERDUTY_SECRET_ENV} is not set")
    expected = pagerduty_signature(secret, body)
    given = [s.strip() for s in headers.get("x-pagerduty-signature", "").split(",")]
    if not any(hmac.compare_digest(expected, s) for s in given if s):
        raise BadSignature("PagerDuty signature does not match")


def slack_actions(body: bytes) -> list[Action]:
    """The acknowledgements in a Slack ``block_actions`` payload (form field ``payload``)."""
    form = parse_qs(body.decode())
    payload: dict[str, Any] = json.loads(form["payload"][0])
    if payload.get("type") != "block_actions":
        return []
    user = payload.get("user") or {}
    by = f"slack:{user.get('username') or user.get('name') or user.get('id', '?')}"
    return [
        Action("acknowledge", action["value"], by, "slack")
        for action in payload.get("actions", [])
        if str(action.get("action_id", "")).split(":")[0] == SLACK_ACK_ACTION
        and action.get("value")
    ]


def pagerduty_actions(body: bytes) -> list[Action]:
    """The acknowledgement or resolution in a PagerDuty V3 webhook (other events: none)."""
    event = json.loads(body).get("event") or {}
    verb = {"incident.acknowledged": "acknowledge", "incident.resolved": "resolve"}.get(
        event.get("event_type", "")
    )
    dedup_key = (event.get("data") or {}).get("incident_key")
    if verb is None or not dedup_key:
        return []
    agent = (event.get("agent") or {}).get("summary") or "PagerDuty"
    return [Action(verb, None, f"pagerduty:{agent}", "pagerduty", dedup_key)]


def apply(conn: psycopg.Connection, actions: list[Action]) -> list[dict[str, Any]]:
    """Carry out verified actions; returns what each did (alert key, notifications queued)."""
    done = []
    for action in actions:
        key = action.alert_key
        if key is None and action.dedup_key:
            key = alert_for_dedup_key(conn, action.dedup_key)
        if key is None:
            done.append({"verb": action.verb, "alert_key": None, "queued": 0})
            continue
        if action.verb == "acknowledge":
            queued = acknowledge(conn, key, action.by, action.source)
        else:
            queued = resolve_by_hand(conn, key, action.by, action.source)
        done.append({"verb": action.verb, "alert_key": key, "queued": queued})
    return done
