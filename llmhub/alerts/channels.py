"""Channel clients: Slack (Block Kit), PagerDuty Events API v2, Microsoft Teams (Workflows
webhook + Adaptive Card), a signed generic webhook, and email (SMTP, plain + HTML).

Each client renders one delivery (the alerts of one group, or one alert for PagerDuty) and
classifies the answer: sent, retry later (5xx, 429 with its Retry-After, network errors) or
permanent (other 4xx: an archived Slack channel, a bad routing key) which is never retried.

Secrets (webhook URLs, routing keys, HMAC keys, SMTP passwords) are resolved from their
references at send time and scrubbed from every error message the sender stores or logs.
apprise is not used: its PagerDuty plugin cannot set a dedup key or resolve, and the other
channels need the status code and Retry-After that apprise hides.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import smtplib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, parsedate_to_datetime
from html import escape
from typing import Any

import httpx

# httpx logs every request's full URL at INFO, and a Slack or Teams webhook URL *is* the secret
# (found by tests/integration/test_alerts.py::test_secrets_never_in_database_or_logs).
logging.getLogger("httpx").setLevel(logging.WARNING)

WEBHOOK_SCHEMA_VERSION = "1"
SIGNATURE_HEADER = "X-LLMHub-Signature"
TIMESTAMP_HEADER = "X-LLMHub-Timestamp"
KEY_HEADER = "X-LLMHub-Notification-Key"
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
PAGERDUTY_CHANGE_URL = "https://events.pagerduty.com/v2/change/enqueue"
PAGERDUTY_SEVERITY = {
    "info": "info",
    "warning": "warning",
    "error": "error",
    "critical": "critical",
}
SLACK_MAX_ALERTS = 10
SLACK_ACK_ACTION = "llmhub_ack"
# Slack: 400 invalid_payload, 403 action_prohibited, 404 channel_not_found, 410
# channel_is_archived; none gets better by retrying. 408 (timeout) and 429 do.
RETRYABLE_4XX = frozenset({408, 425, 429})


class SecretError(RuntimeError):
    """A secret reference cannot be resolved (the message names the reference, not a value)."""


def resolve_secret(ref: str | None) -> str | None:
    """The secret a reference points at (``env:NAME``); ``None`` for no reference."""
    if ref is None:
        return None
    scheme, _, name = ref.partition(":")
    if scheme != "env" or not name:
        raise SecretError(f"unsupported secret reference {ref!r} (use env:VARIABLE)")
    value = os.environ.get(name)
    if not value:
        raise SecretError(f"secret reference {ref} is not set in the environment")
    return value


def scrub(text: str, secrets: Sequence[str | None]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


@dataclass(frozen=True)
class Outcome:
    """What one delivery attempt came to."""

    kind: str  # sent | retry | permanent
    http_status: int | None = None
    retry_after_s: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class Delivery:
    channel: str
    event: str
    keys: tuple[str, ...]
    alerts: tuple[Mapping[str, Any], ...]
    config: Mapping[str, Any]


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def classify(response: httpx.Response) -> Outcome:
    status = response.status_code
    if 200 <= status < 300:
        return Outcome("sent", status)
    body = response.text[:300]
    if status >= 500 or status in RETRYABLE_4XX:
        return Outcome("retry", status, retry_after(response.headers.get("retry-after")), body)
    return Outcome("permanent", status, None, body)


def _headline(d: Delivery) -> str:
    first = d.alerts[0]
    verb = {"resolve": "RESOLVED", "acknowledge": "ACKNOWLEDGED", "repeat": "STILL FIRING"}.get(
        d.event, first["severity"].upper()
    )
    more = f" (+{len(d.alerts) - 1} more)" if len(d.alerts) > 1 else ""
    return f"[{verb}] {first['title']}{more}"


def render_slack(d: Delivery) -> dict[str, Any]:
    """Block Kit message: a header, one section per alert (at most ``SLACK_MAX_ALERTS``)."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _headline(d)[:150]}}
    ]
    for index, alert in enumerate(d.alerts[:SLACK_MAX_ALERTS]):
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"*{alert['title']}*\n{alert['summary']}"},
            }
        )
        context = (
            f"{alert['severity']} · tenant `{alert['tenant_id']}` · {alert['source']} · "
            f"`{alert['key']}`"
        )
        context_block = [{"type": "mrkdwn", "text": context}]
        blocks.append({"type": "context", "elements": context_block})
        buttons: list[dict[str, Any]] = [
            {
                "type": "button",
                "text": {"type": "plain_text", "text": link["text"]},
                "url": link["href"],
            }
            for link in alert.get("links", [])[:4]
        ]
        if d.event in ("trigger", "repeat"):
            # Answered by llmhub/api/routes_alert_callbacks.py (the Slack app's interactivity
            # URL); action ids must be unique within a message.
            buttons.append(
                {
                    "type": "button",
                    "style": "primary",
                    "text": {"type": "plain_text", "text": "Acknowledge"},
                    "action_id": f"{SLACK_ACK_ACTION}:{index}",
                    "value": alert["key"][:2000],
                }
            )
        if buttons:
            blocks.append({"type": "actions", "elements": buttons})
    if len(d.alerts) > SLACK_MAX_ALERTS:
        rest = len(d.alerts) - SLACK_MAX_ALERTS
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"and {rest} more"}]}
        )
    return {"text": _headline(d), "blocks": blocks}


def render_teams(d: Delivery) -> dict[str, Any]:
    """A Workflows webhook message carrying one Adaptive Card (schema 1.4)."""
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "size": "Large",
            "weight": "Bolder",
            "wrap": True,
            "text": _headline(d),
        }
    ]
    actions = []
    for alert in d.alerts[:SLACK_MAX_ALERTS]:
        body.append({"type": "TextBlock", "weight": "Bolder", "wrap": True, "text": alert["title"]})
        body.append({"type": "TextBlock", "wrap": True, "text": alert["summary"]})
        body.append(
            {
                "type": "FactSet",
                "facts": [
                    {"title": "Tenant", "value": alert["tenant_id"]},
                    {"title": "Severity", "value": alert["severity"]},
                    {"title": "Source", "value": alert["source"]},
                    {"title": "Key", "value": alert["key"]},
                ],
            }
        )
        actions += [
            {"type": "Action.OpenUrl", "title": link["text"], "url": link["href"]}
            for link in alert.get("links", [])
        ]
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    if actions:
        card["actions"] = actions[:5]
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }


def render_pagerduty(d: Delivery, routing_key: str) -> dict[str, Any]:
    """Events API v2: ``trigger`` (and ``repeat``, sent as a trigger on the same dedup key),
    ``acknowledge`` and ``resolve`` on the alert's dedup key; ``change`` events for deploys."""
    alert = d.alerts[0]
    if d.event == "change":
        return {
            "routing_key": routing_key,
            "payload": {
                "summary": alert["title"][:1024],
                "timestamp": alert["occurred_at"],
                "source": alert.get("application") or alert["tenant_id"],
                "custom_details": alert.get("details", {}),
            },
            "links": [
                {"href": link["href"], "text": link["text"]} for link in alert.get("links", [])
            ],
        }
    action = {"acknowledge": "acknowledge", "resolve": "resolve"}.get(d.event, "trigger")
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": alert["dedup_key"],
    }
    if action == "trigger":
        event["payload"] = {
            "summary": alert["title"][:1024],
            "source": alert.get("application") or alert["tenant_id"],
            "severity": PAGERDUTY_SEVERITY[alert["severity"]],
            "timestamp": alert["occurred_at"],
            "component": alert.get("application"),
            "group": alert["tenant_id"],
            "class": alert["source"],
            "custom_details": {"summary": alert["summary"], **alert.get("details", {})},
        }
        event["links"] = [
            {"href": link["href"], "text": link["text"]} for link in alert.get("links", [])
        ]
        event["client"] = "LLM Analytics Hub"
    return event


def render_webhook(d: Delivery, now: datetime) -> dict[str, Any]:
    """Generic webhook body: schema ``llmhub.alert`` version 1, documented in
    llmhub/alerts/webhook.schema.json."""
    return {
        "schema": "llmhub.alert",
        "schema_version": WEBHOOK_SCHEMA_VERSION,
        "event": d.event,
        "notification_keys": list(d.keys),
        "sent_at": now.isoformat(),
        "alerts": [
            {
                k: alert.get(k)
                for k in (
                    "key",
                    "dedup_key",
                    "tenant_id",
                    "application",
                    "source",
                    "severity",
                    "status",
                    "title",
                    "summary",
                    "occurred_at",
                    "resolved_at",
                    "links",
                    "details",
                )
            }
            for alert in d.alerts
        ],
    }


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256 over ``timestamp + "." + body``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def render_email(d: Delivery, sender: str, recipients: Sequence[str]) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = _headline(d)
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = f"<{hashlib.sha256('|'.join(d.keys).encode()).hexdigest()[:32]}@llmhub>"
    msg[KEY_HEADER] = ",".join(d.keys)
    lines, items = [], []
    for alert in d.alerts:
        lines += [
            f"{alert['title']}",
            f"  {alert['summary']}",
            f"  severity {alert['severity']}, tenant {alert['tenant_id']}, key {alert['key']}",
            "",
        ]
        links = "".join(
            f' <a href="{escape(link["href"])}">{escape(link["text"])}</a>'
            for link in alert.get("links", [])
        )
        items.append(
            f"<li><b>{escape(alert['title'])}</b> ({escape(alert['severity'])})<br>"
            f"{escape(alert['summary'])}<br><small>tenant {escape(alert['tenant_id'])} · "
            f"{escape(alert['key'])}</small>{links}</li>"
        )
    msg.set_content("\n".join(lines))
    msg.add_alternative(
        f"<html><body><h3>{escape(_headline(d))}</h3><ul>{''.join(items)}</ul></body></html>",
        subtype="html",
    )
    return msg


class Channels:
    """Sends deliveries; one HTTP client (connection reuse) per sender."""

    def __init__(self, client: httpx.Client | None = None, timeout_s: float = 10.0) -> None:
        self.client = client or httpx.Client(timeout=timeout_s)
        self.timeout_s = timeout_s

    def close(self) -> None:
        self.client.close()

    def send(self, d: Delivery, secret: str | None) -> Outcome:
        try:
            if d.channel == "email":
                return self._email(d, secret)
            return self._http(d, secret)
        except httpx.HTTPError as exc:
            return Outcome("retry", None, None, scrub(f"{type(exc).__name__}: {exc}", [secret]))
        except (smtplib.SMTPException, OSError) as exc:
            code = getattr(exc, "smtp_code", None)
            kind = "permanent" if isinstance(code, int) and 500 <= code < 600 else "retry"
            return Outcome(kind, code, None, scrub(f"{type(exc).__name__}: {exc}", [secret]))

    def _http(self, d: Delivery, secret: str | None) -> Outcome:
        now = datetime.now(UTC)
        headers = {KEY_HEADER: ",".join(d.keys), "Content-Type": "application/json"}
        if d.channel == "slack":
            url, body = _required(secret, d), render_slack(d)
        elif d.channel == "teams":
            url, body = _required(secret, d), render_teams(d)
        elif d.channel == "pagerduty":
            key = _required(secret, d)
            default = PAGERDUTY_CHANGE_URL if d.event == "change" else PAGERDUTY_EVENTS_URL
            option = "change_url" if d.event == "change" else "events_url"
            url, body = d.config.get(option, default), render_pagerduty(d, key)
        elif d.channel == "webhook":
            url, body = d.config["endpoint"], render_webhook(d, now)
        else:
            raise ValueError(f"unknown channel {d.channel!r}")
        raw = json.dumps(body, separators=(",", ":"), default=str).encode()
        if d.channel == "webhook":
            stamp = str(int(now.timestamp()))
            headers[TIMESTAMP_HEADER] = stamp
            if secret:
                headers[SIGNATURE_HEADER] = sign(secret, stamp, raw)
        response = self.client.post(url, content=raw, headers=headers)
        outcome = classify(response)
        if outcome.error:
            outcome = Outcome(
                outcome.kind,
                outcome.http_status,
                outcome.retry_after_s,
                scrub(outcome.error, [secret]),
            )
        return outcome

    def _email(self, d: Delivery, password: str | None) -> Outcome:
        cfg = d.config
        msg = render_email(d, cfg.get("from", "llmhub@localhost"), cfg["to"])
        with smtplib.SMTP(
            cfg.get("host", "127.0.0.1"), int(cfg.get("port", 25)), timeout=self.timeout_s
        ) as smtp:
            if cfg.get("starttls"):
                smtp.starttls()
            if cfg.get("username") and password:
                smtp.login(cfg["username"], password)
            smtp.send_message(msg)
        return Outcome("sent", 250)


def _required(secret: str | None, d: Delivery) -> str:
    if not secret:
        raise SecretError(f"{d.channel} needs a secret reference (its webhook URL or routing key)")
    return secret
