"""Row-level security on the ML outputs: tenant analysts read their own tenants' rows only.

The marts already keep tenants apart (0004 and the dbt post-hook); the ``analytics`` schema
(anomalies, forecasts, budgets, budget projections, anomaly feedback) gets the same two read
policies (the incident tables get theirs from 0008, which also shows a cross-tenant incident to
the tenants it touches, without the columns that name the others):

- ``analyst_all_tenants``: members of ``analyst`` read every tenant;
- ``tenant_analyst_granted_tenants``: members of ``tenant_analyst`` read the tenants that
  ``marts_access.current_tenants`` lists for them (one grant list for marts and analytics).

Permissive policies add up: 0010 gives every role but the API an unrestricted policy on these
tables, which alone would let a tenant analyst read every tenant. ``tenant_analyst_only_granted``
is RESTRICTIVE (ANDed with whatever else applies) for every command: a member of
``tenant_analyst`` reads and writes its granted tenants' rows and no others, whatever other
policy exists.

Anomaly feedback is written by analysts: ``analyst`` may write any tenant's, ``tenant_analyst``
only its tenants' (``with check``), and a trigger stamps ``noted_by`` with the role that wrote
the row (``current_user``) and ``noted_at`` with the time, whatever the writer put there: a
verdict is always attributed to who gave it. The publishing service (``llmhub_dagster``, from
0007, when it exists) reads and writes every row. RLS is enabled, not forced: the owner (the
migration's role, which the local stack's assets use) keeps full access.

Revision ID: 0011
Revises: 0005
Create Date: 2026-11-29
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TABLES = (
    "anomalies",
    "forecasts",
    "budgets",
    "budget_projections",
    "anomaly_feedback",
)
TENANT_FILTER = "tenant_id in (select tenant_id from marts_access.current_tenants)"
PUBLISHER = "llmhub_dagster"


def _each_table(body: str) -> None:
    """Run ``body`` (format() with %1$s = the table) for every listed table that exists."""
    names = ", ".join(f"'analytics.{table}'" for table in TABLES)
    op.execute(
        f"""
        do $$
        declare
            name text;
        begin
            foreach name in array array[{names}] loop
                if to_regclass(name) is not null then
                    {body}
                end if;
            end loop;
        end $$
        """
    )


def upgrade() -> None:
    op.execute("grant usage on schema analytics to analyst, tenant_analyst")
    _each_table(
        f"""
        execute format('alter table %1$s enable row level security', name);
        execute format('drop policy if exists analyst_all_tenants on %1$s', name);
        execute format('create policy analyst_all_tenants on %1$s for select to analyst
            using (true)', name);
        execute format('drop policy if exists tenant_analyst_granted_tenants on %1$s', name);
        execute format('create policy tenant_analyst_granted_tenants on %1$s for select
            to tenant_analyst using ({TENANT_FILTER})', name);
        execute format('drop policy if exists tenant_analyst_only_granted on %1$s', name);
        execute format('create policy tenant_analyst_only_granted on %1$s as restrictive
            for all to tenant_analyst using ({TENANT_FILTER}) with check ({TENANT_FILTER})', name);
        execute format('grant select on %1$s to analyst, tenant_analyst', name);
        if exists (select from pg_roles where rolname = '{PUBLISHER}') then
            execute format('drop policy if exists publisher_all_rows on %1$s', name);
            execute format('create policy publisher_all_rows on %1$s for all to {PUBLISHER}
                using (true) with check (true)', name);
        end if;
        """
    )
    feedback = "analytics.anomaly_feedback"
    op.execute(f"grant insert, update on {feedback} to analyst, tenant_analyst")
    op.execute(
        f"create policy analyst_writes_any on {feedback} for insert to analyst with check (true)"
    )
    op.execute(
        f"create policy analyst_updates_any on {feedback} for update to analyst "
        "using (true) with check (true)"
    )
    op.execute(
        f"create policy tenant_analyst_writes_own on {feedback} for insert to tenant_analyst "
        f"with check ({TENANT_FILTER})"
    )
    op.execute(
        f"create policy tenant_analyst_updates_own on {feedback} for update to tenant_analyst "
        f"using ({TENANT_FILTER}) with check ({TENANT_FILTER})"
    )
    op.execute(
        """
        create function analytics.stamp_feedback_author() returns trigger
        language plpgsql as $$
        begin
            new.noted_by := current_user;
            new.noted_at := now();
            return new;
        end
        $$
        """
    )
    op.execute(
        f"create trigger anomaly_feedback_author before insert or update on {feedback} "
        "for each row execute function analytics.stamp_feedback_author()"
    )


def downgrade() -> None:
    feedback = "analytics.anomaly_feedback"
    op.execute(f"drop trigger if exists anomaly_feedback_author on {feedback}")
    op.execute("drop function if exists analytics.stamp_feedback_author()")
    for policy in (
        "analyst_writes_any",
        "analyst_updates_any",
        "tenant_analyst_writes_own",
        "tenant_analyst_updates_own",
    ):
        op.execute(f"drop policy if exists {policy} on {feedback}")
    op.execute(f"revoke insert, update on {feedback} from tenant_analyst")
    _each_table(
        """
        execute format('drop policy if exists analyst_all_tenants on %1$s', name);
        execute format('drop policy if exists tenant_analyst_granted_tenants on %1$s', name);
        execute format('drop policy if exists publisher_all_rows on %1$s', name);
        execute format('drop policy if exists tenant_analyst_only_granted on %1$s', name);
        execute format('revoke select on %1$s from tenant_analyst', name);
        execute format('alter table %1$s disable row level security', name);
        """
    )
    op.execute("revoke usage on schema analytics from tenant_analyst")
