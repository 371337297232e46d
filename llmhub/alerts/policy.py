"""Alertmanager-style policy, pure: route matching, grouping, group wait, repeat interval, and
inhibition by silences, quiet hours and maintenance windows.

``plan`` takes the current alertables, the routes, silences and mute windows, and what each
route was last told about each alert (from the outbox), and returns the notifications to
enqueue. It reads no clock and no database, so the semantics are unit-tested directly:

- every enabled route whose matchers (tenant or ``*``, optional application, optional
  severities) accept an alert receives it (fan-out to each channel a tenant routes to);
- a firing alert is announced (``trigger``) when the route has not been told about it, was told
  it resolved, or was told a different fingerprint; it is re-announced (``repeat``) once
  ``repeat_interval_s`` has passed since the route last heard of it (unless the alert does
  not repeat: predictive budget alerts);
- a new trigger waits ``group_wait_s`` so alerts of the same group (``group_by`` labels) leave
  together; a trigger joining a group that is already waiting leaves with it;
- a resolved alert is announced (``resolve``) to every route that was told it fired;
- deploys (source ``deploy``) go to PagerDuty routes only, once, as change events;
- silenced or muted alerts are not announced; nothing is recorded for them, so an alert still
  firing when the silence ends is announced then (as Alertmanager does). Resolves are never
  muted: a receiver that heard the trigger must hear the resolve.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from llmhub.alerts.model import SEVERITY_RANK, Alertable

ANY_TENANT = "*"
CHANGE_SOURCE = "deploy"


@dataclass(frozen=True)
class Route:
    route_id: int
    tenant_id: str
    channel: str
    application: str | None = None
    severities: tuple[str, ...] | None = None
    channel_config: Mapping[str, Any] = field(default_factory=dict)
    secret_ref: str | None = None
    group_by: tuple[str, ...] = ("tenant_id", "source")
    group_wait_s: int = 30
    repeat_interval_s: int = 14_400
    priority: int = 100
    is_enabled: bool = True

    def matches(self, alert: Alertable) -> bool:
        if not self.is_enabled:
            return False
        if self.tenant_id not in (ANY_TENANT, alert.tenant_id):
            return False
        if self.application is not None and self.application != alert.application:
            return False
        return self.severities is None or alert.severity in self.severities

    def group_key(self, alert: Alertable) -> str:
        # PagerDuty incidents are per alert (one dedup key each): never grouped.
        if self.channel == "pagerduty":
            return f"{self.route_id}|{alert.key}"
        labels = {
            "tenant_id": alert.tenant_id,
            "source": alert.source,
            "application": alert.application or "",
            "severity": alert.severity,
            "key": alert.key,
        }
        parts = [
            f"{label}={labels.get(label, alert.details.get(label, ''))}" for label in self.group_by
        ]
        return f"{self.route_id}|" + ",".join(parts)


@dataclass(frozen=True)
class Silence:
    """Alertmanager silence: matchers are equality on alert labels (tenant_id is implied)."""

    silence_id: int
    tenant_id: str
    matchers: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime
    comment: str = ""
    created_by: str = ""

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def silences(self, alert: Alertable, now: datetime) -> bool:
        if not self.active(now) or self.tenant_id not in (ANY_TENANT, alert.tenant_id):
            return False
        labels = alert_labels(alert)
        return all(_matches(labels.get(name), value) for name, value in self.matchers.items())


def _matches(actual: str | None, expected: str) -> bool:
    if expected.endswith("*"):
        return actual is not None and actual.startswith(expected[:-1])
    return actual == expected


def alert_labels(alert: Alertable) -> dict[str, str]:
    """The labels silences match on: the alert's fields plus its string details."""
    labels = {k: str(v) for k, v in alert.details.items() if isinstance(v, str | int | float)}
    labels.update(
        key=alert.key,
        tenant_id=alert.tenant_id,
        source=alert.source,
        severity=alert.severity,
        application=alert.application or "",
    )
    return labels


@dataclass(frozen=True)
class MuteWindow:
    """Quiet hours (recurring, local time) or a maintenance window (absolute)."""

    window_id: int
    tenant_id: str
    kind: str
    name: str = ""
    days_of_week: tuple[int, ...] | None = None  # ISO: Monday 1 .. Sunday 7
    start_local: time | None = None
    end_local: time | None = None
    timezone: str = "UTC"
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    bypass_severities: tuple[str, ...] = ("critical",)

    def active(self, now: datetime) -> bool:
        if self.kind == "maintenance":
            assert self.starts_at is not None and self.ends_at is not None
            return self.starts_at <= now < self.ends_at
        assert self.start_local is not None and self.end_local is not None
        local = now.astimezone(ZoneInfo(self.timezone))
        clock = local.time().replace(tzinfo=None)
        if self.start_local <= self.end_local:
            inside, day = self.start_local <= clock < self.end_local, local.isoweekday()
        else:
            # Overnight (22:00-07:00): the early-morning part belongs to the previous day's window.
            late, early = clock >= self.start_local, clock < self.end_local
            inside = late or early
            day = local.isoweekday() if late else (local - timedelta(days=1)).isoweekday()
        return inside and (not self.days_of_week or day in self.days_of_week)

    def mutes(self, alert: Alertable, now: datetime) -> bool:
        if self.tenant_id not in (ANY_TENANT, alert.tenant_id):
            return False
        return alert.severity not in self.bypass_severities and self.active(now)


@dataclass(frozen=True)
class RouteHistory:
    """What a route was last told about an alert (from the outbox)."""

    event: str
    fingerprint: str
    created_at: datetime
    triggers: int


@dataclass(frozen=True)
class Notification:
    notification_key: str
    route: Route
    alert: Alertable
    event: str
    group_key: str
    next_attempt_at: datetime


@dataclass(frozen=True)
class Suppressed:
    alert_key: str
    route_id: int
    reason: str


def plan(
    alerts: Iterable[Alertable],
    routes: Sequence[Route],
    silences: Sequence[Silence],
    windows: Sequence[MuteWindow],
    history: Mapping[tuple[int, str], RouteHistory],
    waiting_groups: Mapping[str, datetime],
    now: datetime,
) -> tuple[list[Notification], list[Suppressed]]:
    """The notifications to enqueue now, and what was held back (and why).

    Args:
        history: ``(route_id, alert_key)`` -> the last notification enqueued for it.
        waiting_groups: group key -> ``next_attempt_at`` of its pending triggers.
    """
    out: list[Notification] = []
    held: list[Suppressed] = []
    groups = dict(waiting_groups)
    ordered = sorted(routes, key=lambda r: (r.priority, r.route_id))
    for alert in alerts:
        for route in ordered:
            if not route.matches(alert):
                continue
            last = history.get((route.route_id, alert.key))
            group_key = route.group_key(alert)
            if alert.source == CHANGE_SOURCE:
                # Deploys are PagerDuty change events (context beside incidents), sent once.
                if route.channel == "pagerduty" and last is None:
                    key = f"{alert.key}|r{route.route_id}|change"
                    out.append(Notification(key, route, alert, "change", group_key, now))
                continue
            if alert.status == "resolved":
                if last is not None and last.event != "resolve":
                    stamp = (alert.resolved_at or now).isoformat()
                    key = f"{alert.key}|r{route.route_id}|resolve|{stamp}"
                    out.append(Notification(key, route, alert, "resolve", group_key, now))
                continue
            if last is None or last.event == "resolve" or last.fingerprint != alert.fingerprint:
                event = "trigger"
            elif alert.repeats and now - last.created_at >= timedelta(
                seconds=route.repeat_interval_s
            ):
                event = "repeat"
            else:
                continue
            reason = _inhibited(alert, silences, windows, now)
            if reason:
                held.append(Suppressed(alert.key, route.route_id, reason))
                continue
            if event == "trigger":
                count = last.triggers if last else 0
                key = f"{alert.key}|r{route.route_id}|trigger|{alert.fingerprint}|{count}"
                due = groups.setdefault(group_key, now + timedelta(seconds=route.group_wait_s))
            else:
                epoch = int(now.timestamp()) // route.repeat_interval_s
                key = f"{alert.key}|r{route.route_id}|repeat|{epoch}"
                due = now
            out.append(Notification(key, route, alert, event, group_key, due))
    return out, held


def _inhibited(
    alert: Alertable, silences: Sequence[Silence], windows: Sequence[MuteWindow], now: datetime
) -> str | None:
    for silence in silences:
        if silence.silences(alert, now):
            return f"silence {silence.silence_id}"
    for window in windows:
        if window.mutes(alert, now):
            return f"{window.kind} {window.window_id}"
    return None


def at_least(severity: str) -> tuple[str, ...]:
    """Severities at or above ``severity`` (a route's ``--min-severity``)."""
    floor = SEVERITY_RANK[severity]
    return tuple(s for s, rank in SEVERITY_RANK.items() if rank >= floor)
