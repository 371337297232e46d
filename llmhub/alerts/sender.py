"""Drains the outbox: claim a due group with ``select ... for update skip locked``, send it,
record the attempt, commit, next; ``concurrency`` worker threads do this side by side, each on
its own database connection, sharing one HTTP client (persistent connections per receiver).

One transaction per delivery: the row lock keeps concurrent senders off it while it is in
flight, and the attempt row, the status change and the commit happen together after the send
(one statement settles them). A sender killed mid-batch therefore loses nothing (an uncommitted
claim is released and the rows are sent again) and repeats nothing it committed; the deliveries
in flight at the kill (at most one per worker thread) may reach the receiver twice, which is why
every request carries its notification key (``X-LLMHub-Notification-Key``, PagerDuty's dedup key)
for downstream deduplication.

Rate limits: at most ``max_in_flight`` deliveries per route at once (``channel_config``
``max_in_flight``, default ``DEFAULT_IN_FLIGHT``); a route that answered 429 with Retry-After is
not claimed by this sender until that time has passed, so one throttled Slack webhook does not
keep being hammered while the other channels carry on.

Retries: exponential backoff with equal jitter (``backoff_s``), or the receiver's Retry-After
when it sends one; permanent failures (non-retryable 4xx, a missing secret) are not retried;
after ``max_attempts`` a notification ends ``failed`` with its last error and every attempt
kept in ``alerting.delivery_attempts``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg

from llmhub.alerts.channels import Channels, Delivery, Outcome, SecretError, resolve_secret
from llmhub.alerts.policy import Route
from llmhub.alerts.store import load_routes

log = logging.getLogger(__name__)

MAX_GROUP = 50
DEFAULT_CONCURRENCY = 8
DEFAULT_IN_FLIGHT = 4

# One round trip claims a group: the oldest due row (locked first, so two senders never pick
# the same head) and the due rows of its group that no other sender holds. Only the oldest
# pending row of a group can be a head: a PagerDuty incident's trigger, acknowledge and resolve
# (one group per alert) leave in order even with many workers, and a retry holds back what
# was queued after it in its group. Routes this sender
# must leave alone for now (throttled by a Retry-After, or at their in-flight limit) are
# skipped. The head scan walks outbox_due_ix (next_attempt_at, created_at) in order: with the
# one-column index every claim sorted all the rows due at the same instant (0013).
CLAIM = """
with head as (
    select h.route_id, h.group_key, h.event from alerting.outbox as h
    where h.status = 'pending' and h.next_attempt_at <= now() and h.route_id <> all(%(skip)s)
        and not exists (
            select from alerting.outbox as e
            where e.route_id = h.route_id and e.group_key = h.group_key
                and e.status = 'pending'
                and (e.created_at, e.notification_key) < (h.created_at, h.notification_key)
        )
    order by h.next_attempt_at, h.created_at
    limit 1
    for update skip locked
)
select o.route_id, o.event, o.notification_key, o.payload, o.attempts
from alerting.outbox as o
inner join head using (route_id, group_key, event)
where o.status = 'pending' and o.next_attempt_at <= now()
order by o.created_at, o.notification_key
limit %(limit)s
for update of o skip locked
"""

# The attempt rows and the outbox updates of one delivery in one statement (one round trip).
SETTLE = """
with attempt as (
    insert into alerting.delivery_attempts (
        notification_key, tenant_id, channel, attempt, started_at, finished_at, outcome,
        http_status, retry_after_s, error
    )
    select k, t, %(channel)s, a, %(started)s, %(finished)s, o, %(http_status)s,
        %(retry_after_s)s, %(error)s
    from unnest(%(k)s::text[], %(t)s::text[], %(a)s::int[], %(o)s::text[]) as u (k, t, a, o)
)
update alerting.outbox as ob set
    status = u.status,
    attempts = u.a,
    next_attempt_at = coalesce(u.due, ob.next_attempt_at),
    last_error = %(error)s,
    sent_at = case when u.status = 'sent' then %(finished)s else ob.sent_at end
from unnest(%(k)s::text[], %(s)s::text[], %(a)s::int[], %(due)s::timestamptz[])
    as u (k, status, a, due)
where ob.notification_key = u.k
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
    """Sends due outbox rows over ``channels``; safe to run as several processes at once.

    Args:
        concurrency: worker threads, each claiming and sending one delivery at a time on its
            own connection (1: the old strictly sequential sender).
    """

    def __init__(
        self,
        database_url: str,
        channels: Channels | None = None,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        max_attempts: int = 8,
        base_backoff_s: float = 2.0,
        max_backoff_s: float = 600.0,
        rng: random.Random | None = None,
        on_sent: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.database_url = database_url
        self.conn = psycopg.connect(database_url, application_name="llmhub-alerts-sender")
        self.concurrency = max(1, concurrency)
        # One pool shared by the workers: a keep-alive connection per receiver and worker.
        self.channels = channels or Channels(
            httpx.Client(
                timeout=10.0,
                limits=httpx.Limits(
                    max_connections=4 * self.concurrency,
                    max_keepalive_connections=4 * self.concurrency,
                ),
            )
        )
        self.max_attempts = max_attempts
        self.base_backoff_s = base_backoff_s
        self.max_backoff_s = max_backoff_s
        self.rng = rng or random.Random()
        self.on_sent = on_sent
        self._routes: dict[int, Route] = {}
        self._lock = threading.Lock()
        self._in_flight: Counter[int] = Counter()
        self._throttled_until: dict[int, float] = {}
        self._workers: list[psycopg.Connection] = []
        self._budget: int | None = None
        self.report = SendReport()

    def close(self) -> None:
        for conn in self._workers:
            conn.close()
        self._workers.clear()
        self.conn.close()
        self.channels.close()

    def _route(self, conn: psycopg.Connection, route_id: int) -> Route | None:
        with self._lock:
            cached = route_id in self._routes
        if not cached:
            routes = {r.route_id: r for r in load_routes(conn, enabled_only=False)}
            with self._lock:
                self._routes = routes
        with self._lock:
            return self._routes.get(route_id)

    def _skip(self) -> list[int]:
        """Routes not to claim now: throttled by a Retry-After, or at their in-flight limit."""
        now = time.monotonic()
        with self._lock:
            skip = [r for r, until in self._throttled_until.items() if until > now]
            for route_id, n in self._in_flight.items():
                route = self._routes.get(route_id)
                limit = (route.channel_config if route else {}).get(
                    "max_in_flight", DEFAULT_IN_FLIGHT
                )
                if n >= int(limit):
                    skip.append(route_id)
        return skip

    def _take_budget(self) -> bool:
        with self._lock:
            if self._budget is None:
                return True
            if self._budget <= 0:
                return False
            self._budget -= 1
            return True

    def _return_budget(self) -> None:
        with self._lock:
            if self._budget is not None:
                self._budget += 1

    def send_one(self, conn: psycopg.Connection | None = None) -> bool:
        """Claim, send and settle one delivery on ``conn`` (default: the sender's own
        connection); False when nothing is due."""
        conn = conn or self.conn
        if not self._take_budget():
            return False
        with conn.transaction():
            claimed = conn.execute(CLAIM, {"skip": self._skip(), "limit": MAX_GROUP}).fetchall()
            if not claimed:
                self._return_budget()
                return False
            route_id, event = claimed[0][0], claimed[0][1]
            rows = [r[2:] for r in claimed]
            route = self._route(conn, route_id)
            keys = tuple(r[0] for r in rows)
            with self._lock:
                self._in_flight[route_id] += 1
            started = datetime.now(UTC)
            try:
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
            finally:
                with self._lock:
                    self._in_flight[route_id] -= 1
            if outcome.retry_after_s:
                with self._lock:
                    self._throttled_until[route_id] = time.monotonic() + outcome.retry_after_s
            self._settle(conn, route, rows, outcome, started)
        if outcome.kind == "sent" and self.on_sent:
            self.on_sent(list(keys))
        return True

    def _settle(
        self,
        conn: psycopg.Connection,
        route: Route | None,
        rows: list[tuple],
        outcome: Outcome,
        started: datetime,
    ) -> None:
        finished = datetime.now(UTC)
        channel = route.channel if route else "?"
        params: dict[str, Any] = {
            "channel": channel,
            "started": started,
            "finished": finished,
            "http_status": outcome.http_status,
            "retry_after_s": outcome.retry_after_s,
            "error": outcome.error,
            "k": [],
            "t": [],
            "a": [],
            "o": [],
            "s": [],
            "due": [],
        }
        counts: Counter[str] = Counter()
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
                    with self._lock:
                        wait = backoff_s(attempt, self.base_backoff_s, self.max_backoff_s, self.rng)
                due = finished + timedelta(seconds=wait)
            params["k"].append(key)
            params["t"].append(payload["tenant_id"])
            params["a"].append(attempt)
            params["o"].append(kind)
            params["s"].append(status)
            params["due"].append(due)
            counts[status] += 1
        conn.execute(SETTLE, params)
        with self._lock:
            self.report.deliveries += 1
            self.report.notifications_sent += counts["sent"]
            self.report.per_channel[channel] += counts["sent"]
            self.report.failed += counts["failed"]
            self.report.failures_per_channel[channel] += counts["failed"]
            self.report.retries += counts["pending"]
            if not self.report.per_channel[channel]:
                del self.report.per_channel[channel]
            if not self.report.failures_per_channel[channel]:
                del self.report.failures_per_channel[channel]
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
        """Seconds until the next pending notification is due (None: nothing pending); a route
        throttled by a Retry-After is due when its throttle ends."""
        rows = self.conn.execute(
            "select route_id, extract(epoch from min(next_attempt_at) - now()) "
            "from alerting.outbox where status = 'pending' group by route_id"
        ).fetchall()
        self.conn.commit()
        if not rows:
            return None
        now = time.monotonic()
        with self._lock:
            throttled = {r: until - now for r, until in self._throttled_until.items()}
        return max(min(max(float(due), throttled.get(r, 0.0)) for r, due in rows), 0.0)

    def _worker_conns(self) -> list[psycopg.Connection]:
        while len(self._workers) < self.concurrency - 1:
            self._workers.append(
                psycopg.connect(self.database_url, application_name="llmhub-alerts-sender")
            )
        return [self.conn, *self._workers]

    def _run_until_idle(self, progress: Callable[[SendReport], None] | None) -> int:
        """Every worker sends until it finds nothing due; returns the deliveries made."""
        before = self.report.deliveries

        def work(conn: psycopg.Connection) -> None:
            while self.send_one(conn):
                if progress:
                    with self._lock:
                        progress(self.report)

        # An idle poll costs one claim query, not one per worker (the pool starts only when
        # there is work).
        if not self.send_one(self.conn):
            return 0
        if progress:
            with self._lock:
                progress(self.report)
        conns = self._worker_conns()
        if len(conns) == 1:
            work(conns[0])
        else:
            with ThreadPoolExecutor(len(conns), thread_name_prefix="alerts-sender") as pool:
                for future in [pool.submit(work, conn) for conn in conns]:
                    future.result()
        return self.report.deliveries - before

    def drain(
        self,
        *,
        wait_up_to_s: float = 0.0,
        limit: int | None = None,
        progress: Callable[[SendReport], None] | None = None,
    ) -> SendReport:
        """Send until nothing is due; then, while a pending row falls due within
        ``wait_up_to_s`` seconds (a retry, a Retry-After, a group wait), wait for it."""
        self._budget = None if limit is None else max(limit - self.report.deliveries, 0)
        try:
            while self._budget is None or self._budget > 0:
                if self._run_until_idle(progress):
                    continue
                wait = self.next_due_in()
                if wait is None or wait > wait_up_to_s:
                    break
                time.sleep(min(wait, wait_up_to_s) + 0.01)
        finally:
            self._budget = None
        return self.report
