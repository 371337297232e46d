"""Drains the outbox: claim a due group with ``select ... for update skip locked``, send it,
record the attempt, commit, next.

One transaction per delivery: the row lock keeps concurrent senders off it while it is in
flight, and the attempt row, the status change and the commit happen together after the send.
A sender killed mid-batch therefore loses nothing (an uncommitted claim is released and the
rows are sent again) and repeats nothing it committed; the one delivery in flight at the kill
may reach the receiver twice, which is why every request carries its notification key
(``X-LLMHub-Notification-Key``, PagerDuty's dedup key) for downstream deduplication.

Retries: exponential backoff with equal jitter (``backoff_s``), or the receiver's Retry-After
when it sends one; permanent failures (non-retryable 4xx, a missing secret) are not retried;
after ``max_attempts`` a notification ends ``failed`` with its last error and every attempt
kept in ``alerting.delivery_attempts``.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from llmhub.alerts.channels import Channels, Delivery, Outcome, SecretError, resolve_secret
from llmhub.alerts.policy import Route
from llmhub.alerts.store import load_routes

log = logging.getLogger(__name__)

MAX_GROUP = 50

# One round trip claims a group: the oldest due row (locked first, so two senders never pick
# the same head) and the due rows of its group that no other sender holds.
CLAIM = """
with head as (
    select route_id, group_key, event from alerting.outbox
    where status = 'pending' and next_attempt_at <= now()
    order by next_attempt_at, created_at
    limit 1
    for update skip locked
)
select o.route_id, o.event, o.notification_key, o.payload, o.attempts
from alerting.outbox as o
inner join head using (route_id, group_key, event)
where o.status = 'pending' and o.next_attempt_at <= now()
order by o.created_at, o.notification_key
limit %s
for update of o skip locked
"""


def backoff_s(attempt: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Delay before retry number ``attempt`` (1-based): exponential, capped, equal jitter (half
    fixed, half random) so a burst of failures does not retry in lockstep."""
    delay = min(cap_s, base_s * 2 ** (attempt - 1))
    return delay / 2 + rng.uniform(0, delay / 2)


@dataclass
class SendReport:
    deliveries: int = 0
    notifications_sent: int = 0
    retries: int = 0
    failed: int = 0
    per_channel: Counter[str] = field(default_factory=Counter)
    failures_per_channel: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {
            "deliveries": self.deliveries,
            "notifications_sent": self.notifications_sent,
            "retries": self.retries,
            "failed": self.failed,
            "sent_per_channel": dict(self.per_channel),
            "failures_per_channel": dict(self.failures_per_channel),
        }


class Sender:
    """Sends due outbox rows over ``channels``; safe to run as several processes at once."""

    def __init__(
        self,
        database_url: str,
        channels: Channels | None = None,
        *,
        max_attempts: int = 8,
        base_backoff_s: float = 2.0,
        max_backoff_s: float = 600.0,
        rng: random.Random | None = None,
        on_sent: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.conn = psycopg.connect(database_url, application_name="llmhub-alerts-sender")
        self.channels = channels or Channels()
        self.max_attempts = max_attempts
        self.base_backoff_s = base_backoff_s
        self.max_backoff_s = max_backoff_s
        self.rng = rng or random.Random()
        self.on_sent = on_sent
        self._routes: dict[int, Route] = {}
        self.report = SendReport()

    def close(self) -> None:
        self.conn.close()

    def _route(self, route_id: int) -> Route | None:
        if route_id not in self._routes:
            self._routes = {r.route_id: r for r in load_routes(self.conn, enabled_only=False)}
        return self._routes.get(route_id)

    def send_one(self) -> bool:
        """Claim, send and settle one delivery; False when nothing is due."""
        with self.conn.transaction():
            claimed = self.conn.execute(CLAIM, (MAX_GROUP,)).fetchall()
            if not claimed:
                return False
            route_id, event = claimed[0][0], claimed[0][1]
            rows = [r[2:] for r in claimed]
            route = self._route(route_id)
            keys = tuple(r[0] for r in rows)
            started = datetime.now(UTC)
            if route is None:
                outcome = Outcome("permanent", error=f"route {route_id} no longer exists")
            else:
                delivery = Delivery(
                    channel=route.channel,
                    event=event,
                    keys=keys,
                    alerts=tuple(r[1] for r in rows),
                    config=route.channel_config,
                )
                try:
                    outcome = self.channels.send(delivery, resolve_secret(route.secret_ref))
                except SecretError as exc:
                    outcome = Outcome("permanent", error=str(exc))
            self._settle(route, rows, outcome, started)
        if outcome.kind == "sent" and self.on_sent:
            self.on_sent(list(keys))
        return True

    def _settle(
        self, route: Route | None, rows: list[tuple], outcome: Outcome, started: datetime
    ) -> None:
        finished = datetime.now(UTC)
        channel = route.channel if route else "?"
        self.report.deliveries += 1
        # Pipelined: the attempt rows and status updates go out without a round trip each.
        with self.conn.pipeline(), self.conn.cursor() as cur:
            for key, payload, attempts in rows:
                attempt = attempts + 1
                if outcome.kind == "sent":
                    kind, status, due = "sent", "sent", None
                elif outcome.kind == "permanent" or attempt >= self.max_attempts:
                    kind = "permanent" if outcome.kind == "permanent" else "gave_up"
                    status, due = "failed", None
                else:
                    kind, status = "retry", "pending"
                    wait = outcome.retry_after_s
                    if wait is None:
                        wait = backoff_s(attempt, self.base_backoff_s, self.max_backoff_s, self.rng)
                    due = finished + timedelta(seconds=wait)
                cur.execute(
                    "insert into alerting.delivery_attempts (notification_key, tenant_id, channel, "
                    "attempt, started_at, finished_at, outcome, http_status, retry_after_s, error) "
                    "values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        key,
                        payload["tenant_id"],
                        channel,
                        attempt,
                        started,
                        finished,
                        kind,
                        outcome.http_status,
                        outcome.retry_after_s,
                        outcome.error,
                    ),
                )
                cur.execute(
                    "update alerting.outbox set status = %s, attempts = %s, "
                    "next_attempt_at = coalesce(%s, next_attempt_at), last_error = %s, "
                    "sent_at = case when %s = 'sent' then %s else sent_at end "
                    "where notification_key = %s",
                    (status, attempt, due, outcome.error, status, finished, key),
                )
                if status == "sent":
                    self.report.notifications_sent += 1
                    self.report.per_channel[channel] += 1
                elif status == "failed":
                    self.report.failed += 1
                    self.report.failures_per_channel[channel] += 1
                else:
                    self.report.retries += 1
        if outcome.kind != "sent":
            log.warning(
                "%s delivery of %d notification(s) %s: %s %s",
                channel,
                len(rows),
                outcome.kind,
                outcome.http_status or "",
                (outcome.error or "")[:200],
            )

    def next_due_in(self) -> float | None:
        """Seconds until the next pending notification is due (None: nothing pending)."""
        row = self.conn.execute(
            "select extract(epoch from min(next_attempt_at) - now()) from alerting.outbox "
            "where status = 'pending'"
        ).fetchone()
        self.conn.commit()
        return None if row[0] is None else max(float(row[0]), 0.0)

    def drain(
        self,
        *,
        wait_up_to_s: float = 0.0,
        limit: int | None = None,
        progress: Callable[[SendReport], None] | None = None,
    ) -> SendReport:
        """Send until nothing is due; then, while a pending row falls due within
        ``wait_up_to_s`` seconds (a retry, a Retry-After, a group wait), wait for it."""
        while limit is None or self.report.deliveries < limit:
            if self.send_one():
                if progress:
                    progress(self.report)
                continue
            wait = self.next_due_in()
            if wait is None or wait > wait_up_to_s:
                break
            time.sleep(min(wait, wait_up_to_s) + 0.01)
        return self.report
