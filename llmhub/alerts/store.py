"""The alerting tables: policy loaded from them, alert state kept in them, notifications
written to the outbox idempotently (``on conflict (notification_key) do nothing``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from llmhub.alerts.model import Alertable, from_payload
from llmhub.alerts.policy import (
    MuteWindow,
    Notification,
    Route,
    RouteHistory,
    Silence,
    Suppressed,
    plan,
)
from llmhub.alerts.sources import AlertSource

log = logging.getLogger(__name__)

ROUTE_COLUMNS = (
    "route_id, tenant_id, channel, application, severities, channel_config, secret_ref, "
    "group_by, group_wait_s, repeat_interval_s, priority, is_enabled"
)


def load_routes(conn: psycopg.Connection, *, enabled_only: bool = True) -> list[Route]:
    rows = conn.execute(
        f"select {ROUTE_COLUMNS} from alerting.routes"  # noqa: S608 - constant column list
        + (" where is_enabled" if enabled_only else "")
        + " order by priority, route_id"
    ).fetchall()
    return [
        Route(
            route_id=r[0],
            tenant_id=r[1],
            channel=r[2],
            application=r[3],
            severities=tuple(r[4]) if r[4] else None,
            channel_config=r[5] or {},
            secret_ref=r[6],
            group_by=tuple(r[7]),
            group_wait_s=r[8],
            repeat_interval_s=r[9],
            priority=r[10],
            is_enabled=r[11],
        )
        for r in rows
    ]


def load_silences(conn: psycopg.Connection, now: datetime) -> list[Silence]:
    rows = conn.execute(
        "select silence_id, tenant_id, matchers, starts_at, ends_at, comment, created_by "
        "from alerting.silences where ends_at > %s and starts_at <= %s",
        (now, now),
    ).fetchall()
    return [Silence(r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]


def load_windows(conn: psycopg.Connection, now: datetime) -> list[MuteWindow]:
    rows = conn.execute(
        "select window_id, tenant_id, kind, name, days_of_week, start_local, end_local, "
        "timezone, starts_at, ends_at, bypass_severities from alerting.mute_windows "
        "where kind = 'quiet_hours' or ends_at > %s",
        (now,),
    ).fetchall()
    return [
        MuteWindow(
            window_id=r[0],
            tenant_id=r[1],
            kind=r[2],
            name=r[3],
            days_of_week=tuple(r[4]) if r[4] else None,
            start_local=r[5],
            end_local=r[6],
            timezone=r[7],
            starts_at=r[8],
            ends_at=r[9],
            bypass_severities=tuple(r[10] or ()),
        )
        for r in rows
    ]


def load_state(conn: psycopg.Connection, source: str | None = None) -> dict[str, dict[str, Any]]:
    """alert key -> ``{status, fingerprint, detail}`` of the alerts seen so far."""
    rows = conn.execute(
        "select alert_key, status, fingerprint, detail from alerting.alert_state "
        "where %(source)s::text is null or source = %(source)s",
        {"source": source},
    ).fetchall()
    return {r[0]: {"status": r[1], "fingerprint": r[2], "detail": r[3]} for r in rows}


def _history(conn: psycopg.Connection, keys: Sequence[str]) -> dict[tuple[int, str], RouteHistory]:
    rows = conn.execute(
        """
        select distinct on (route_id, alert_key)
            route_id, alert_key, event, payload ->> 'fingerprint', created_at,
            count(*) filter (where event = 'trigger') over (partition by route_id, alert_key)
        from alerting.outbox
        where alert_key = any(%s) and event in ('trigger', 'repeat', 'resolve', 'change')
        order by route_id, alert_key, created_at desc, event desc
        """,
        (list(keys),),
    ).fetchall()
    return {(r[0], r[1]): RouteHistory(r[2], r[3], r[4], r[5]) for r in rows}


def _waiting_groups(conn: psycopg.Connection, now: datetime) -> dict[str, datetime]:
    rows = conn.execute(
        "select group_key, min(next_attempt_at) from alerting.outbox "
        "where status = 'pending' and event = 'trigger' and attempts = 0 "
        "and next_attempt_at > %s group by group_key",
        (now,),
    ).fetchall()
    return {r[0]: r[1] for r in rows}


@dataclass
class EvaluationReport:
    alertables: int = 0
    changed: int = 0
    enqueued: int = 0
    duplicates: int = 0
    suppressed: list[Suppressed] = field(default_factory=list)
    per_source: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "alertables": self.alertables,
            "changed": self.changed,
            "enqueued": self.enqueued,
            "duplicates": self.duplicates,
            "suppressed": len(self.suppressed),
            "per_source": self.per_source,
        }


def collect(
    conn: psycopg.Connection, sources: Iterable[AlertSource], now: datetime
) -> tuple[list[Alertable], dict[str, int]]:
    """Every source's current alertables, plus resolutions of alerts a complete source no
    longer reports."""
    alerts: list[Alertable] = []
    per_source: dict[str, int] = {}
    for source in sources:
        state = load_state(conn, source.name)
        current = list(source.fetch(conn, now, state))
        per_source[source.name] = len(current)
        alerts.extend(current)
        if source.complete:
            seen = {a.key for a in current}
            for key, row in state.items():
                if key not in seen and row["status"] == "firing":
                    gone = from_payload(row["detail"])
                    alerts.append(
                        Alertable(**{**gone.__dict__, "status": "resolved", "resolved_at": now})
                    )
    return alerts, per_source


def evaluate(
    conn: psycopg.Connection,
    sources: Iterable[AlertSource] = (),
    now: datetime | None = None,
    alerts: Sequence[Alertable] | None = None,
) -> EvaluationReport:
    """Evaluate the sources (or the given ``alerts``) against the policy and write the outbox.

    One transaction: the alert state and the outbox rows it implies commit together, so two
    evaluators racing enqueue each notification once (the keys collide, the loser's insert does
    nothing).
    """
    with conn.transaction():
        now = now or conn.execute("select now()").fetchone()[0]
        report = EvaluationReport()
        if alerts is None:
            alerts, report.per_source = collect(conn, sources, now)
        alerts = list(alerts)
        report.alertables = len(alerts)
        report.changed = upsert_state(conn, alerts, now)
        routes = load_routes(conn)
        history = _history(conn, [a.key for a in alerts])
        notes, report.suppressed = plan(
            alerts,
            routes,
            load_silences(conn, now),
            load_windows(conn, now),
            history,
            _waiting_groups(conn, now),
            now,
        )
        report.enqueued = enqueue(conn, notes, now)
        report.duplicates = len(notes) - report.enqueued
    return report


def upsert_state(conn: psycopg.Connection, alerts: Sequence[Alertable], now: datetime) -> int:
    """Record each alert's current state; returns how many are new or changed."""
    with conn.cursor() as cur:
        # executemany pipelines the statements (one round trip per batch, not per alert);
        # rowcount is then the sum over the batch.
        cur.executemany(
            """
                insert into alerting.alert_state (
                    alert_key, tenant_id, source, application, severity, status, fingerprint,
                    title, detail, first_seen_at, last_changed_at, occurred_at, resolved_at
                ) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                on conflict (alert_key) do update set
                    severity = excluded.severity, status = excluded.status,
                    fingerprint = excluded.fingerprint, title = excluded.title,
                    detail = excluded.detail, last_changed_at = excluded.last_changed_at,
                    resolved_at = excluded.resolved_at,
                    acked_at = case when excluded.status = 'firing'
                        and alert_state.status = 'resolved' then null else alert_state.acked_at end
                where (alert_state.fingerprint, alert_state.status)
                    is distinct from (excluded.fingerprint, excluded.status)
            """,
            [
                (
                    a.key,
                    a.tenant_id,
                    a.source,
                    a.application,
                    a.severity,
                    a.status,
                    a.fingerprint,
                    a.title,
                    Jsonb(a.to_payload()),
                    now,
                    now,
                    a.occurred_at,
                    a.resolved_at,
                )
                for a in alerts
            ],
        )
        return max(cur.rowcount, 0)


ENQUEUE = """
insert into alerting.outbox (
    notification_key, route_id, tenant_id, channel, alert_key, group_key, event, severity,
    next_attempt_at, payload, occurred_at, created_at
)
select k, r, t, c, a, g, e, s, n, p::jsonb, o, %(now)s
from unnest(
    %(k)b::text[], %(r)b::bigint[], %(t)b::text[], %(c)b::text[], %(a)b::text[], %(g)b::text[],
    %(e)b::text[], %(s)b::text[], %(n)b::timestamptz[], %(p)b::text[], %(o)b::timestamptz[]
) as u (k, r, t, c, a, g, e, s, n, p, o)
on conflict (notification_key) do nothing
returning notification_key
"""


def enqueue(conn: psycopg.Connection, notes: Sequence[Notification], now: datetime) -> int:
    """Insert the notifications in one statement; a key already in the outbox is left alone.
    Returns how many rows are new."""
    if not notes:
        return 0
    # Binary parameters (%b): text-format arrays of JSON went through psycopg's regex quoting,
    # which was 90% of a burst's evaluation CPU; and one payload per alert, not per route.
    bases: dict[int, dict[str, Any]] = {}
    payloads = []
    for n in notes:
        base = bases.get(id(n.alert))
        if base is None:
            base = bases[id(n.alert)] = n.alert.to_payload()
        payloads.append(json.dumps({**base, "event": n.event}))
    inserted = {
        row[0]
        for row in conn.execute(
            ENQUEUE,
            {
                "now": now,
                "k": [n.notification_key for n in notes],
                "r": [n.route.route_id for n in notes],
                "t": [n.alert.tenant_id for n in notes],
                "c": [n.route.channel for n in notes],
                "a": [n.alert.key for n in notes],
                "g": [n.group_key for n in notes],
                "e": [n.event for n in notes],
                "s": [n.alert.severity for n in notes],
                "n": [n.next_attempt_at for n in notes],
                "p": payloads,
                "o": [n.alert.occurred_at for n in notes],
            },
        ).fetchall()
    }
    with conn.cursor() as cur:
        for n in notes:
            if n.event == "resolve" and n.notification_key in inserted:
                cur.execute(
                    "update alerting.outbox set resolved_at = %s where alert_key = %s "
                    "and route_id = %s and event in ('trigger', 'repeat') and resolved_at is null",
                    (n.alert.resolved_at or now, n.alert.key, n.route.route_id),
                )
    return len(inserted)


def acknowledge(conn: psycopg.Connection, alert_key: str, by: str, source: str = "cli") -> int:
    """Mark an alert acknowledged; PagerDuty routes that were triggered get an ``acknowledge``
    event.

    Args:
        by: who acknowledged (a user name, a Slack user, a PagerDuty agent).
        source: where from (``cli``, ``slack``, ``pagerduty``), kept in ``ack_source``.

    Returns:
        The number of notifications enqueued (0: unknown, resolved or already acknowledged).
    """
    with conn.transaction():
        row = conn.execute(
            "update alerting.alert_state set acked_at = now(), acked_by = %s, ack_source = %s "
            "where alert_key = %s and status = 'firing' and acked_at is null "
            "returning acked_at, detail",
            (by, source, alert_key),
        ).fetchone()
        if row is None:
            return 0
        acked_at, detail = row
        conn.execute(
            "update alerting.outbox set acked_at = %s where alert_key = %s "
            "and event in ('trigger', 'repeat') and acked_at is null",
            (acked_at, alert_key),
        )
        routes = {r.route_id: r for r in load_routes(conn)}
        alert = from_payload(detail)
        triggered = conn.execute(
            "select distinct route_id from alerting.outbox where alert_key = %s "
            "and channel = 'pagerduty' and event = 'trigger'",
            (alert_key,),
        ).fetchall()
        notes = [
            Notification(
                f"{alert_key}|r{route_id}|acknowledge|{acked_at.isoformat()}",
                routes[route_id],
                alert,
                "acknowledge",
                routes[route_id].group_key(alert),
                acked_at,
            )
            for (route_id,) in triggered
            if route_id in routes
        ]
        return enqueue(conn, notes, acked_at)


def resolve_by_hand(conn: psycopg.Connection, alert_key: str, by: str, source: str) -> int:
    """Resolve a firing alert because a person resolved it elsewhere (a PagerDuty incident
    resolved in PagerDuty): the alert state records who, and every route that heard the alert
    fire hears it resolve (PagerDuty included: resolving a resolved incident changes nothing).

    As in Alertmanager, the hub does not overrule its sources: if the condition is still
    reported at the next evaluation, the alert fires again as a new trigger.

    Returns:
        The number of notifications enqueued (0: unknown or not firing).
    """
    with conn.transaction():
        row = conn.execute(
            "update alerting.alert_state set status = 'resolved', resolved_at = now(), "
            "resolved_by = %s, last_changed_at = now(), acked_at = coalesce(acked_at, now()), "
            "acked_by = coalesce(acked_by, %s), ack_source = coalesce(ack_source, %s) "
            "where alert_key = %s and status = 'firing' returning resolved_at, detail",
            (by, by, source, alert_key),
        ).fetchone()
        if row is None:
            return 0
        resolved_at, detail = row
        firing = from_payload(detail)
        alert = Alertable(**{**firing.__dict__, "status": "resolved", "resolved_at": resolved_at})
        notes, _ = plan(
            [alert],
            load_routes(conn),
            [],
            [],
            _history(conn, [alert_key]),
            {},
            resolved_at,
        )
        return enqueue(conn, notes, resolved_at)


def alert_for_dedup_key(conn: psycopg.Connection, dedup_key: str) -> str | None:
    """The alert key behind a PagerDuty dedup key (``incident_key`` in its webhooks)."""
    row = conn.execute(
        "select alert_key from alerting.outbox where channel = 'pagerduty' "
        "and payload ->> 'dedup_key' = %s limit 1",
        (dedup_key,),
    ).fetchone()
    return row[0] if row else None
