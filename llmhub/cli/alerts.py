"""``llmhub alerts ...``: routes, silences, quiet hours, evaluation, sending, history."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.table import Table

from llmhub.cli.output import out
from llmhub.config import load_settings

alerts_app = typer.Typer(help="Alert routing, silences, the notification outbox and its sender.")
route_app = typer.Typer(help="Routes: which tenant's alerts go to which channel.")
silence_app = typer.Typer(help="Silences: mute matching alerts until they expire.")
quiet_app = typer.Typer(help="Quiet hours and maintenance windows.")
alerts_app.add_typer(route_app, name="route")
alerts_app.add_typer(silence_app, name="silence")
alerts_app.add_typer(quiet_app, name="quiet")

CHANNELS = ("slack", "pagerduty", "teams", "webhook", "email")


def _connect():
    from llmhub.db import connect

    return connect(load_settings(), autocommit=True)


def _duration(text: str) -> timedelta:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    try:
        return timedelta(seconds=float(text[:-1]) * units[text[-1]])
    except (KeyError, ValueError, IndexError):
        raise typer.BadParameter(f"{text!r} is not a duration like 30s, 5m, 2h, 1d") from None


def _parse_config(pairs: list[str]) -> dict[str, object]:
    config: dict[str, object] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"--config {pair!r}: expected NAME=VALUE")
        config[name] = value.split(",") if name == "to" else value
    return config


@route_app.command("add")
def route_add(
    tenant: Annotated[str, typer.Option(help="Tenant id, or * for every tenant.")],
    channel: Annotated[str, typer.Option(help=f"One of {', '.join(CHANNELS)}.")],
    secret_ref: Annotated[
        str | None,
        typer.Option(help="env:VARIABLE holding the webhook URL / routing key / password."),
    ] = None,
    application: Annotated[str | None, typer.Option(help="Only this application.")] = None,
    severity: Annotated[
        list[str] | None, typer.Option(help="Only these severities (repeatable).")
    ] = None,
    min_severity: Annotated[str | None, typer.Option(help="This severity and above.")] = None,
    config: Annotated[
        list[str] | None,
        typer.Option(help="Non-secret setting NAME=VALUE (endpoint, events_url, host, to...)."),
    ] = None,
    group_by: Annotated[str, typer.Option(help="Comma-separated labels.")] = "tenant_id,source",
    group_wait: Annotated[str, typer.Option(help="Wait before a new group's first send.")] = "30s",
    repeat_interval: Annotated[str, typer.Option(help="Re-send a still-firing alert.")] = "4h",
    priority: int = 100,
) -> None:
    """Add a route. Secrets are references (env:NAME), never values."""
    from psycopg.types.json import Jsonb

    from llmhub.alerts.policy import at_least

    if channel not in CHANNELS:
        raise typer.BadParameter(f"channel must be one of {', '.join(CHANNELS)}")
    severities = list(severity or []) or (list(at_least(min_severity)) if min_severity else None)
    with _connect() as conn:
        row = conn.execute(
            "insert into alerting.routes (tenant_id, application, severities, channel, "
            "channel_config, secret_ref, group_by, group_wait_s, repeat_interval_s, priority) "
            "values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) returning route_id",
            (
                tenant,
                application,
                severities,
                channel,
                Jsonb(_parse_config(config or [])),
                secret_ref,
                group_by.split(","),
                int(_duration(group_wait).total_seconds()),
                int(_duration(repeat_interval).total_seconds()),
                priority,
            ),
        ).fetchone()
    out.print(f"route {row[0]} added")


@route_app.command("list")
def route_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List routes (secret references are shown, secrets never are)."""
    from llmhub.alerts.store import load_routes

    with _connect() as conn:
        routes = load_routes(conn, enabled_only=False)
    if as_json:
        out.print_json(
            json.dumps([{**r.__dict__, "channel_config": dict(r.channel_config)} for r in routes])
        )
        return
    table = Table(
        "id",
        "tenant",
        "application",
        "severities",
        "channel",
        "secret",
        "group wait",
        "repeat",
        "config",
    )
    for r in routes:
        table.add_row(
            str(r.route_id),
            r.tenant_id,
            r.application or "*",
            ",".join(r.severities or ()) or "*",
            r.channel,
            r.secret_ref or "",
            f"{r.group_wait_s}s",
            f"{r.repeat_interval_s}s",
            json.dumps(dict(r.channel_config)),
        )
    out.print(table)


@route_app.command("rm")
def route_rm(route_id: int) -> None:
    """Remove a route (its never-attempted notifications go with it; anything attempted stays
    in the history, a pending retry ends ``failed``)."""
    with _connect() as conn:
        # A pending retry has attempts on record: counted, so its history is never cascaded away.
        sent = conn.execute(
            "select count(*) from alerting.outbox where route_id = %s "
            "and (status <> 'pending' or attempts > 0)",
            (route_id,),
        ).fetchone()[0]
        if sent:
            conn.execute(
                "update alerting.routes set is_enabled = false where route_id = %s", (route_id,)
            )
            conn.execute(
                "delete from alerting.outbox where route_id = %s and status = 'pending' "
                "and attempts = 0",
                (route_id,),
            )
            conn.execute(
                "update alerting.outbox set status = 'failed', last_error = 'route removed' "
                "where route_id = %s and status = 'pending'",
                (route_id,),
            )
            out.print(f"route {route_id} disabled (kept for its {sent} delivered notifications)")
            return
        deleted = conn.execute("delete from alerting.routes where route_id = %s", (route_id,))
    if not deleted.rowcount:
        raise typer.Exit(f"no route {route_id}")
    out.print(f"route {route_id} removed")


@silence_app.command("add")
def silence_add(
    tenant: Annotated[str, typer.Option(help="Tenant id, or * for every tenant.")],
    duration: Annotated[str, typer.Option(help="How long, e.g. 2h.")],
    comment: Annotated[str, typer.Option(help="Why (required, as in Alertmanager).")],
    matcher: Annotated[
        list[str] | None,
        typer.Option(help="LABEL=VALUE (source, severity, application, key; VALUE* prefixes)."),
    ] = None,
    author: Annotated[str | None, typer.Option(help="Default: $USER.")] = None,
) -> None:
    """Silence matching alerts for DURATION."""
    import getpass

    from psycopg.types.json import Jsonb

    matchers = {}
    for m in matcher or []:
        name, sep, value = m.partition("=")
        if not sep:
            raise typer.BadParameter(f"--matcher {m!r}: expected LABEL=VALUE")
        matchers[name] = value
    with _connect() as conn:
        row = conn.execute(
            "insert into alerting.silences (tenant_id, matchers, comment, created_by, ends_at) "
            "values (%s, %s, %s, %s, now() + %s) returning silence_id, ends_at",
            (tenant, Jsonb(matchers), comment, author or getpass.getuser(), _duration(duration)),
        ).fetchone()
    out.print(f"silence {row[0]} until {row[1]:%Y-%m-%d %H:%M:%S %Z}")


@silence_app.command("list")
def silence_list(
    all_: Annotated[bool, typer.Option("--all", help="Include expired silences.")] = False,
) -> None:
    """Active silences (with --all, expired ones too)."""
    with _connect() as conn:
        rows = conn.execute(
            "select silence_id, tenant_id, matchers, created_by, starts_at, ends_at, comment, "
            "ends_at > now() from alerting.silences where %s or ends_at > now() "
            "order by silence_id",
            (all_,),
        ).fetchall()
    table = Table("id", "tenant", "matchers", "author", "starts", "ends", "active", "comment")
    for r in rows:
        table.add_row(
            str(r[0]),
            r[1],
            json.dumps(r[2]),
            r[3],
            f"{r[4]:%Y-%m-%d %H:%M}",
            f"{r[5]:%Y-%m-%d %H:%M}",
            "yes" if r[7] else "no",
            r[6],
        )
    out.print(table)


@silence_app.command("expire")
def silence_expire(silence_id: int) -> None:
    """End a silence now."""
    with _connect() as conn:
        done = conn.execute(
            "update alerting.silences "
            "set ends_at = greatest(now(), starts_at + interval '1 microsecond') "
            "where silence_id = %s and ends_at > now()",
            (silence_id,),
        )
    if not done.rowcount:
        raise typer.Exit(f"no active silence {silence_id}")
    out.print(f"silence {silence_id} expired")


@quiet_app.command("add")
def quiet_add(
    tenant: Annotated[str, typer.Option(help="Tenant id, or * for every tenant.")],
    name: Annotated[str, typer.Option()],
    start: Annotated[str | None, typer.Option(help="Quiet hours start, local HH:MM.")] = None,
    end: Annotated[str | None, typer.Option(help="Quiet hours end, local HH:MM.")] = None,
    days: Annotated[str | None, typer.Option(help="ISO days, e.g. 1,2,3,4,5.")] = None,
    timezone: str = "UTC",
    maintenance: Annotated[
        str | None, typer.Option(help="A maintenance window of this duration from now, e.g. 2h.")
    ] = None,
    bypass: Annotated[str, typer.Option(help="Severities that still go out.")] = "critical",
) -> None:
    """Add quiet hours (--start/--end) or a maintenance window (--maintenance)."""
    with _connect() as conn:
        if maintenance:
            row = conn.execute(
                "insert into alerting.mute_windows (tenant_id, name, kind, starts_at, ends_at, "
                "bypass_severities) values (%s, %s, 'maintenance', now(), now() + %s, %s) "
                "returning window_id",
                (tenant, name, _duration(maintenance), [s for s in bypass.split(",") if s]),
            ).fetchone()
        else:
            if not (start and end):
                raise typer.BadParameter("quiet hours need --start and --end")
            row = conn.execute(
                "insert into alerting.mute_windows (tenant_id, name, kind, days_of_week, "
                "start_local, end_local, timezone, bypass_severities) "
                "values (%s, %s, 'quiet_hours', %s, %s, %s, %s, %s) returning window_id",
                (
                    tenant,
                    name,
                    [int(d) for d in days.split(",")] if days else None,
                    start,
                    end,
                    timezone,
                    [s for s in bypass.split(",") if s],
                ),
            ).fetchone()
    out.print(f"window {row[0]} added")


@alerts_app.command("evaluate")
def evaluate_cmd() -> None:
    """Evaluate every source against the routes and enqueue notifications (what the sensor does)."""
    from llmhub.alerts.sources import default_sources
    from llmhub.alerts.store import evaluate

    with _connect() as conn:
        report = evaluate(conn, default_sources())
    out.print_json(json.dumps(report.to_dict()))


@alerts_app.command("send")
def send_cmd(
    wait: Annotated[
        float, typer.Option(help="Also wait for retries / group waits due within this many s.")
    ] = 0.0,
    limit: Annotated[int | None, typer.Option(help="Stop after this many deliveries.")] = None,
    concurrency: Annotated[
        int, typer.Option(help="Deliveries in flight at once (worker threads).")
    ] = 8,
) -> None:
    """Drain the outbox: send every due notification, one commit per delivery."""
    from llmhub.alerts.sender import Sender

    sender = Sender(load_settings().database_url, concurrency=concurrency)
    try:
        report = sender.drain(wait_up_to_s=wait, limit=limit)
    finally:
        sender.close()
    out.print_json(json.dumps(report.to_dict()))


@alerts_app.command("ack")
def ack_cmd(
    alert_key: str, by: Annotated[str | None, typer.Option(help="Default: $USER.")] = None
) -> None:
    """Acknowledge an alert (PagerDuty routes get an acknowledge event)."""
    import getpass

    from llmhub.alerts.store import acknowledge

    with _connect() as conn:
        conn.autocommit = False
        queued = acknowledge(conn, alert_key, by or getpass.getuser())
        conn.commit()
    out.print(f"{alert_key} acknowledged; {queued} notification(s) queued")


@alerts_app.command("history")
def history_cmd(
    tenant: Annotated[str | None, typer.Option()] = None,
    since: Annotated[str, typer.Option(help="How far back, e.g. 1d.")] = "1d",
    limit: int = 50,
    attempts: Annotated[
        bool, typer.Option(help="Every delivery attempt, not just outcomes.")
    ] = False,
) -> None:
    """Recent notifications (or every attempt) with status, attempts and last error."""
    start = datetime.now(UTC) - _duration(since)
    with _connect() as conn:
        if attempts:
            rows = conn.execute(
                "select finished_at, tenant_id, channel, notification_key, attempt, outcome, "
                "http_status, left(coalesce(error, ''), 60) from alerting.delivery_attempts "
                "where finished_at >= %s and (%s::text is null or tenant_id = %s) "
                "order by attempt_id desc limit %s",
                (start, tenant, tenant, limit),
            ).fetchall()
            columns = (
                "finished",
                "tenant",
                "channel",
                "key",
                "attempt",
                "outcome",
                "http",
                "error",
            )
        else:
            rows = conn.execute(
                "select created_at, tenant_id, channel, notification_key, event, status, attempts, "
                "left(coalesce(last_error, ''), 60) from alerting.outbox "
                "where created_at >= %s and (%s::text is null or tenant_id = %s) "
                "order by created_at desc limit %s",
                (start, tenant, tenant, limit),
            ).fetchall()
            columns = (
                "created",
                "tenant",
                "channel",
                "key",
                "event",
                "status",
                "attempts",
                "error",
            )
    table = Table(*columns)
    for r in rows:
        table.add_row(f"{r[0]:%m-%d %H:%M:%S}", *(str(v) if v is not None else "" for v in r[1:]))
    out.print(table)


@alerts_app.command("demo")
def demo_cmd(
    sample: Annotated[
        bool, typer.Option(help="Route a few sample alerts as well as the sources' own.")
    ] = False,
) -> None:
    """Show what each channel receives: local receivers, temporary routes to all five channels,
    the sources' current alertables (plus samples), the outbox drained."""
    from llmhub.alerts.demo import sample_alerts, show_channels

    result = show_channels(
        load_settings().database_url, extra=sample_alerts() if sample else (), console=out
    )
    out.print_json(json.dumps({"evaluation": result.evaluation.to_dict(), "sent": result.sent}))
