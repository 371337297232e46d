"""Incidents of the correlation engine, their members, and analysts' root-cause feedback.

Grain and keys:

- ``analytics.incidents``: one row per incident, key ``incident_id`` (a stable hash of root
  cause, tenant and opening bucket: ``ml.correlation.lifecycle``); a re-run or late data updates
  the row. ``tenant_id`` is ``'*'`` for an incident spanning tenants (a provider degrading),
  with the tenants in ``tenant_ids``.
- ``analytics.incident_members``: one row per (incident, member kind, member key); a member is an
  anomaly (``tenant/asset/model/metric@hour``) or an event (its ``event_id``). A correlation pass
  rewrites the members of the incidents it touches.
- ``analytics.incident_feedback``: one verdict per (incident, analyst): was the root cause
  right? ``noted_by`` defaults to ``current_user``.

Row-level security as on the marts (0004 and the dbt macro ``apply_row_level_security``):
``analyst`` reads every row; ``tenant_analyst`` reads the incidents of its tenants
(``marts_access.current_tenants``), cross-tenant incidents that touch one of them, the members of
its tenants only, and the feedback on incidents it can read. On ``incidents`` it is granted the
columns that name no other tenant: not ``tenant_ids``, ``asset_ids`` or ``candidates`` (a
cross-tenant incident's alternatives may be other tenants' changes). Both roles may record
feedback on the incidents they can read. The Dagster service role (0007) writes incidents and
members through policies of its own.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TENANTS = "(select tenant_id from marts_access.current_tenants)"
# Columns of analytics.incidents readable by tenant_analyst (no other tenant's names).
TENANT_COLUMNS = (
    "incident_id, tenant_id, opened_at, last_seen_at, resolved_at, status, severity, "
    "root_cause_type, root_cause_entity, confidence, impact_score, affected_requests, "
    "excess_cost_usd, excess_volume_usd, excess_tokens_per_request_usd, excess_price_mix_usd, "
    "cost_baseline, explanation, rules, signature, seen_before, member_count, first_seen_at, "
    "updated_at"
)


def upgrade() -> None:
    op.execute("create schema if not exists analytics")
    op.execute(
        """
        create table analytics.incidents (
            incident_id text primary key,
            tenant_id text not null,
            tenant_ids text[] not null,
            asset_ids text[] not null,
            opened_at timestamptz not null,
            last_seen_at timestamptz not null,
            resolved_at timestamptz,
            status text not null check (status in ('open', 'resolved')),
            severity text not null
                check (severity in ('info', 'low', 'medium', 'high', 'critical')),
            root_cause_type text not null,
            root_cause_entity text not null,
            confidence double precision not null check (confidence between 0 and 1),
            candidates jsonb not null,
            impact_score double precision not null check (impact_score between 0 and 100),
            affected_requests double precision not null,
            excess_cost_usd double precision not null,
            excess_volume_usd double precision not null,
            excess_tokens_per_request_usd double precision not null,
            excess_price_mix_usd double precision not null,
            cost_baseline text not null,
            explanation text not null,
            rules text[] not null,
            signature text not null,
            seen_before text,
            member_count integer not null,
            first_seen_at timestamptz not null default now(),
            updated_at timestamptz not null default now(),
            check (last_seen_at >= opened_at),
            check ((status = 'resolved') = (resolved_at is not null))
        )
        """
    )
    op.execute("create index incidents_open_ix on analytics.incidents (last_seen_at desc)")
    op.execute(
        "create index incidents_tenant_ix on analytics.incidents (tenant_id, opened_at desc)"
    )
    op.execute(
        """
        create table analytics.incident_members (
            incident_id text not null
                references analytics.incidents (incident_id) on delete cascade,
            member_kind text not null check (member_kind in ('anomaly', 'event')),
            member_key text not null,
            tenant_id text not null,
            asset_id text,
            occurred_at timestamptz not null,
            detail text not null,
            primary key (incident_id, member_kind, member_key)
        )
        """
    )
    op.execute(
        """
        create table analytics.incident_feedback (
            incident_id text not null
                references analytics.incidents (incident_id) on delete cascade,
            verdict text not null check (verdict in ('root_cause_right', 'root_cause_wrong')),
            correct_cause_type text,
            correct_cause_entity text,
            noted_by text not null default current_user,
            noted_at timestamptz not null default now(),
            comment text,
            primary key (incident_id, noted_by)
        )
        """
    )
    visible = f"tenant_id in {TENANTS} or (tenant_id = '*' and tenant_ids && array{TENANTS})"
    policies = {
        "incidents": visible,
        "incident_members": f"tenant_id in {TENANTS}",
        "incident_feedback": "incident_id in (select incident_id from analytics.incidents)",
    }
    for table, using in policies.items():
        op.execute(f"alter table analytics.{table} enable row level security")
        op.execute(
            f"create policy analyst_all_tenants on analytics.{table} "
            "for all to analyst using (true) with check (true)"
        )
        op.execute(
            f"create policy tenant_analyst_granted_tenants on analytics.{table} "
            f"for select to tenant_analyst using ({using})"
        )
    # The Dagster service role (0007) writes incidents and members; with row-level security
    # on, a role without a policy would see and write nothing.
    op.execute(
        "do $$ begin if exists (select from pg_roles where rolname = 'llmhub_dagster') then "
        "create policy dagster_writes on analytics.incidents for all to llmhub_dagster "
        "using (true) with check (true); "
        "create policy dagster_writes on analytics.incident_members for all to llmhub_dagster "
        "using (true) with check (true); "
        "create policy dagster_reads on analytics.incident_feedback for select to llmhub_dagster "
        "using (true); "
        "grant select, insert, update, delete on analytics.incidents, "
        "analytics.incident_members to llmhub_dagster; "
        "grant select on analytics.incident_feedback to llmhub_dagster; "
        "end if; end $$"
    )
    op.execute(
        "create policy tenant_analyst_feedback_write on analytics.incident_feedback "
        "for insert to tenant_analyst with check "
        "(incident_id in (select incident_id from analytics.incidents) "
        "and noted_by = current_user)"
    )
    op.execute(
        "create policy tenant_analyst_feedback_update on analytics.incident_feedback "
        "for update to tenant_analyst using (noted_by = current_user) "
        "with check (noted_by = current_user)"
    )
    op.execute(
        f"""
        do $$ begin
        if exists (select from pg_roles where rolname = 'analyst') then
            grant usage on schema analytics to analyst;
            grant select on analytics.incidents, analytics.incident_members,
                analytics.incident_feedback to analyst;
            grant insert, update on analytics.incident_feedback to analyst;
        end if;
        if exists (select from pg_roles where rolname = 'tenant_analyst') then
            grant usage on schema analytics to tenant_analyst;
            grant select ({TENANT_COLUMNS}) on analytics.incidents to tenant_analyst;
            grant select on analytics.incident_members to tenant_analyst;
            grant select, insert, update on analytics.incident_feedback to tenant_analyst;
        end if;
        end $$
        """
    )


def downgrade() -> None:
    for table in ("incident_feedback", "incident_members", "incidents"):
        op.execute(f"drop table if exists analytics.{table}")
