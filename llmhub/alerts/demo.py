"""What each channel would have received: the demo's alertables routed to Slack, PagerDuty,
Teams, a webhook and email, all pointing at local recording receivers."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from rich.console import Console
from rich.table import Table

from llmhub.alerts.model import Alertable, Link
from llmhub.alerts.receiver import RecordingHTTPServer, RecordingSMTPServer
from llmhub.alerts.sender import Sender
from llmhub.alerts.sources import AlertSource, default_sources
from llmhub.alerts.store import EvaluationReport, collect, evaluate

DEMO_AUTHOR = "llmhub-demo"
DEMO_WEBHOOK_SECRET = "demo-hmac-key"


@dataclass
class ChannelDemo:
    evaluation: EvaluationReport
    sent: dict[str, Any]
    received: dict[str, list[str]] = field(default_factory=dict)


def _routes(
    http: RecordingHTTPServer, smtp: RecordingSMTPServer
) -> list[tuple[str, dict, str | None]]:
    os.environ["LLMHUB_DEMO_SLACK_WEBHOOK"] = http.url("/slack/T000/B000/demo")
    os.environ["LLMHUB_DEMO_TEAMS_WEBHOOK"] = http.url("/teams/workflows/demo")
    os.environ["LLMHUB_DEMO_PAGERDUTY_KEY"] = "demo-routing-key-0000000000000000"
    os.environ["LLMHUB_DEMO_WEBHOOK_HMAC"] = DEMO_WEBHOOK_SECRET
    return [
        ("slack", {}, "env:LLMHUB_DEMO_SLACK_WEBHOOK"),
        ("teams", {}, "env:LLMHUB_DEMO_TEAMS_WEBHOOK"),
        (
            "pagerduty",
            {
                "events_url": http.url("/pagerduty/v2/enqueue"),
                "change_url": http.url("/pagerduty/v2/change/enqueue"),
            },
            "env:LLMHUB_DEMO_PAGERDUTY_KEY",
        ),
        ("webhook", {"endpoint": http.url("/webhook/llmhub")}, "env:LLMHUB_DEMO_WEBHOOK_HMAC"),
        (
            "email",
            {
                "host": "127.0.0.1",
                "port": str(smtp.port),
                "from": "alerts@llmhub.local",
                "to": ["oncall@example.com"],
            },
            None,
        ),
    ]


def _describe(channel: str, body: Any) -> str:
    if channel == "slack":
        return body["text"]
    if channel == "teams":
        return body["attachments"][0]["content"]["body"][0]["text"]
    if channel == "pagerduty":
        summary = body.get("payload", {}).get("summary", "")
        return f"{body.get('event_action', 'change')} {body.get('dedup_key', '')} {summary}".strip()
    if channel == "webhook":
        return f"{body['event']} v{body['schema_version']}: " + "; ".join(
            a["title"] for a in body["alerts"][:3]
        )
    return str(body)


def show_channels(
    database_url: str,
    *,
    sources: Sequence[AlertSource] | None = None,
    alerts: Sequence[Alertable] | None = None,
    extra: Sequence[Alertable] = (),
    console: Console | None = None,
    show: int = 3,
) -> ChannelDemo:
    """Route the alertables (from ``sources``, default every source, or the given ``alerts``;
    plus ``extra``) to all five channels at local receivers, drain the outbox and print what
    each received.

    The demo routes (tenant ``*``, no group wait) are removed afterwards, with their outbox rows.
    """
    console = console or Console()
    with RecordingHTTPServer() as http, RecordingSMTPServer() as smtp:
        route_ids: list[int] = []
        with psycopg.connect(database_url, autocommit=True) as conn:
            try:
                for channel, config, secret_ref in _routes(http, smtp):
                    route_ids.append(
                        conn.execute(
                            "insert into alerting.routes (tenant_id, channel, channel_config, "
                            "secret_ref, group_wait_s, priority, created_by) "
                            "values ('*', %s, %s, %s, 0, 1000, %s) returning route_id",
                            (channel, Jsonb(config), secret_ref, DEMO_AUTHOR),
                        ).fetchone()[0]
                    )
                if alerts is None:
                    alerts, _ = collect(
                        conn, sources if sources is not None else default_sources(), now()
                    )
                evaluation = evaluate(conn, alerts=[*alerts, *extra])
                sender = Sender(database_url)
                try:
                    sent = sender.drain(wait_up_to_s=5).to_dict()
                finally:
                    sender.close()
            finally:
                conn.execute("delete from alerting.routes where route_id = any(%s)", (route_ids,))
        result = ChannelDemo(evaluation, sent)
        for request in http.accepted():
            channel = request.path.strip("/").split("/")[0]
            result.received.setdefault(channel, []).append(_describe(channel, request.body))
        for message in smtp.messages:
            result.received.setdefault("email", []).append(str(message["Subject"]))
    table = Table("channel", "received", f"first {show}", title="What each channel received")
    for channel in ("slack", "pagerduty", "teams", "webhook", "email"):
        got = result.received.get(channel, [])
        table.add_row(channel, str(len(got)), "\n".join(got[:show]))
    console.print(table)
    return result


def now() -> datetime:
    return datetime.now(UTC)


def sample_alerts() -> list[Alertable]:
    """A firing incident-like alert and a projected budget breach, for a demo on a quiet day."""
    at = now() - timedelta(minutes=7)
    return [
        Alertable(
            key="demo:error-storm:tenant-acme:app-support-bot",
            tenant_id="tenant-acme",
            source="anomaly",
            severity="critical",
            status="firing",
            title="Error storm on app-support-bot (gpt-4o)",
            summary="error rate 23% against 0.9% expected for 7 minutes; 429s from the provider",
            occurred_at=at,
            application="app-support-bot",
            links=(Link("Dagit", "http://127.0.0.1:3000/assets/analytics/anomalies"),),
            details={"metric": "error_rate", "observed": 0.23, "expected": 0.009},
        ),
        Alertable(
            key=f"demo:budget:tenant-acme:*:{at:%Y-%m}",
            tenant_id="tenant-acme",
            source="budget_breach",
            severity="error",
            status="firing",
            title=f"tenant-acme projected to exceed its {at:%B} budget",
            summary="$8,400 budget; $6,950 spent month to date, $9,870 projected by month end",
            occurred_at=at,
            details={"breach_date": (at + timedelta(days=5)).date().isoformat()},
            repeats=False,
        ),
    ]
