"""Alert routing, silences, quiet hours, the notification outbox and its delivery history, SLOs.

Schema ``alerting`` holds policy as data (editable with ``llmhub alerts ...`` without a deploy)
and the outbox the sender drains:

- ``routes``: which tenant (and optionally application / severities) goes to which channel, with
  Alertmanager's ``group_by``, ``group_wait`` and ``repeat_interval``. ``channel_config`` holds
  plain settings only; the secret (webhook URL, PagerDuty routing key, SMTP password, HMAC key)
  is a *reference* in ``secret_ref`` (``env:NAME``), resolved by the sender at send time. A check
  constraint refuses the usual secret-bearing keys in ``channel_config``.
- ``mute_windows``: recurring quiet hours (days of week + local time range in a time zone) and
  one-off maintenance windows; severities in ``bypass_severities`` still page.
- ``silences``: matchers with an author, a comment and an expiry (Alertmanager silences).
- ``alert_state``: the last seen state of each alertable (key, fingerprint, status, ack), so a
  re-evaluation notifies only what is new or changed.
- ``outbox``: one row per notification; ``notification_key`` is the dedup key, downstream too.
- ``delivery_attempts``: every attempt, kept (status, HTTP code, error, duration).
- ``slo_objectives``: availability and latency objectives per tenant / application.

Analysts read every table; tenant analysts only their tenants' rows (row-level security with
the marts' ``marts_access.current_tenants``).

Revision ID: 0009
Revises: 0011 (0005 on the branch; re-chained after the migrations merged into main)
Create Date: 2026-11-29
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

CHANNELS = "('slack', 'pagerduty', 'teams', 'webhook', 'email')"
SEVERITIES = "('info', 'warning', 'error', 'critical')"
SECRET_KEYS = (
    "array['url', 'webhook_url', 'routing_key', 'integration_key', 'password', "
    "'secret', 'hmac_secret', 'token', 'api_key']"
)
TENANT_TABLES = (
    "routes",
    "mute_windows",
    "silences",
    "alert_state",
    "outbox",
    "delivery_attempts",
    "slo_objectives",
)


def upgrade() -> None:
    op.execute("create schema if not exists alerting")
    op.execute(
        f"""
        create table alerting.routes (
            route_id bigint generated always as identity primary key,
            tenant_id text not null,
            application text,
            severities text[],
            channel text not null check (channel in {CHANNELS}),
            channel_config jsonb not null default '{{}}'::jsonb
                check (jsonb_typeof(channel_config) = 'object'
                       and not (channel_config ?| {SECRET_KEYS})),
            secret_ref text check (secret_ref ~ '^env:[A-Za-z_][A-Za-z0-9_]*$'),
            group_by text[] not null default '{{tenant_id,source}}',
            group_wait_s integer not null default 30 check (group_wait_s >= 0),
            repeat_interval_s integer not null default 14400 check (repeat_interval_s > 0),
            priority integer not null default 100,
            is_enabled boolean not null default true,
            created_by text not null default current_user,
            created_at timestamptz not null default now()
        )
        """
    )
    op.execute(
        "comment on column alerting.routes.secret_ref is "
        "'Where the secret lives (env:VARIABLE); the secret itself is never stored'"
    )
    op.execute("comment on column alerting.routes.tenant_id is '''*'' matches every tenant'")
    op.execute(
        """
        create table alerting.mute_windows (
            window_id bigint generated always as identity primary key,
            tenant_id text not null,
            name text not null,
            kind text not null check (kind in ('quiet_hours', 'maintenance')),
            days_of_week integer[],
            start_local time,
            end_local time,
            timezone text not null default 'UTC',
            starts_at timestamptz,
            ends_at timestamptz,
            bypass_severities text[] not null default '{critical}',
            created_by text not null default current_user,
            created_at timestamptz not null default now(),
            check (
                (kind = 'quiet_hours' and start_local is not null and end_local is not null)
                or (kind = 'maintenance' and starts_at is not null and ends_at > starts_at)
            )
        )
        """
    )
    op.execute(
        """
        create table alerting.silences (
            silence_id bigint generated always as identity primary key,
            tenant_id text not null,
            matchers jsonb not null default '{}'::jsonb check (jsonb_typeof(matchers) = 'object'),
            comment text not null,
            created_by text not null default current_user,
            starts_at timestamptz not null default now(),
            ends_at timestamptz not null,
            created_at timestamptz not null default now(),
            check (ends_at > starts_at)
        )
        """
    )
    op.execute(
        f"""
        create table alerting.alert_state (
            alert_key text primary key,
            tenant_id text not null,
            source text not null,
            application text,
            severity text not null check (severity in {SEVERITIES}),
            status text not null check (status in ('firing', 'resolved')),
            fingerprint text not null,
            title text not null,
            detail jsonb not null default '{{}}'::jsonb,
            first_seen_at timestamptz not null default now(),
            last_changed_at timestamptz not null default now(),
            occurred_at timestamptz not null,
            resolved_at timestamptz,
            acked_at timestamptz,
            acked_by text
        )
        """
    )
    op.execute(
        f"""
        create table alerting.outbox (
            notification_key text primary key,
            route_id bigint not null references alerting.routes on delete cascade,
            tenant_id text not null,
            channel text not null check (channel in {CHANNELS}),
            alert_key text not null,
            group_key text not null,
            event text not null
                check (event in ('trigger', 'repeat', 'acknowledge', 'resolve', 'change')),
            severity text not null check (severity in {SEVERITIES}),
            status text not null default 'pending' check (status in ('pending', 'sent', 'failed')),
            attempts integer not null default 0,
            next_attempt_at timestamptz not null default now(),
            last_error text,
            payload jsonb not null,
            occurred_at timestamptz not null,
            created_at timestamptz not null default now(),
            sent_at timestamptz,
            acked_at timestamptz,
            resolved_at timestamptz
        )
        """
    )
    op.execute(
        "create index outbox_due_ix on alerting.outbox (next_attempt_at) where status = 'pending'"
    )
    op.execute("create index outbox_alert_ix on alerting.outbox (alert_key, route_id)")
    # The sender claims a group's due rows by (route, group, event); without this index each
    # claim scanned every pending row (quadratic in the backlog).
    op.execute(
        "create index outbox_group_ix on alerting.outbox (route_id, group_key, event, created_at) "
        "where status = 'pending'"
    )
    op.execute(
        """
        create table alerting.delivery_attempts (
            attempt_id bigint generated always as identity primary key,
            notification_key text not null
                references alerting.outbox on delete cascade,
            tenant_id text not null,
            channel text not null,
            attempt integer not null,
            started_at timestamptz not null,
            finished_at timestamptz not null,
            outcome text not null check (outcome in ('sent', 'retry', 'permanent', 'gave_up')),
            http_status integer,
            retry_after_s double precision,
            error text
        )
        """
    )
    op.execute(
        "create index delivery_attempts_key_ix on alerting.delivery_attempts (notification_key)"
    )
    op.execute(
        """
        create table alerting.slo_objectives (
            slo_id text primary key,
            tenant_id text not null,
            asset_id text not null default '*',
            kind text not null check (kind in ('availability', 'latency')),
            objective double precision not null check (objective > 0 and objective < 1),
            latency_percentile double precision
                check (latency_percentile is null or latency_percentile between 0 and 1),
            latency_threshold_ms double precision check (latency_threshold_ms > 0),
            window_days integer not null default 30 check (window_days between 1 and 90),
            created_at timestamptz not null default now(),
            check (kind = 'availability' or latency_threshold_ms is not null)
        )
        """
    )
    op.execute(
        "comment on column alerting.slo_objectives.objective is "
        "'Target share of good requests (availability: successes; latency: requests at or "
        "under latency_threshold_ms, so objective = latency_percentile states pN < threshold)'"
    )
    op.execute(
        """
        do $$
        declare
            t text;
        begin
            if exists (select from pg_roles where rolname = 'analyst') then
                grant usage on schema alerting to analyst;
                grant select on all tables in schema alerting to analyst;
            end if;
            if exists (select from pg_roles where rolname = 'tenant_analyst') then
                grant usage on schema alerting to tenant_analyst;
                grant select on all tables in schema alerting to tenant_analyst;
            end if;
            foreach t in array array[
                'routes', 'mute_windows', 'silences', 'alert_state', 'outbox',
                'delivery_attempts', 'slo_objectives'
            ] loop
                execute format('alter table alerting.%I enable row level security', t);
                if exists (select from pg_roles where rolname = 'analyst') then
                    execute format(
                        'create policy analyst_all_tenants on alerting.%I for select '
                        'to analyst using (true)', t);
                end if;
                if exists (select from pg_roles where rolname = 'tenant_analyst')
                   and to_regclass('marts_access.current_tenants') is not null then
                    execute format(
                        'create policy tenant_analyst_granted_tenants on alerting.%I '
                        'for select to tenant_analyst using (tenant_id in '
                        '(select tenant_id from marts_access.current_tenants))', t);
                end if;
            end loop;
        end $$
        """
    )


def downgrade() -> None:
    op.execute("drop schema if exists alerting cascade")
