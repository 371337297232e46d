"""The HTTP API's own state and its database role: API keys, quota counters, tenant RLS.

- ``llmhub_api``: the login role the API connects as. Not the owner: it reads the marts and
  ``analytics`` only through row-level security keyed on the transaction setting
  ``llmhub.tenant_id`` (the API sets it from the authenticated caller, ``set_config(...,
  true)``), and writes only anomaly feedback and its own quota counters.
- ``api.api_keys``: per-tenant keys, stored as SHA-256 of a 256-bit random secret (a slow hash
  adds nothing to a secret that cannot be guessed), with scopes, a role, expiry and revocation.
- ``api.quota_buckets`` / ``api.quota_months``: the token buckets (ingest events/s, queries/s)
  and monthly event counts, shared by every API process; ``api.take_tokens`` and
  ``api.count_events`` update them atomically (a row lock per bucket).
- Row-level security on ``analytics.*`` (incidents included when it exists): a policy per table
  for ``llmhub_api``, its tenant only. The other roles' policies (analyst, tenant_analyst, the
  publisher) come from 0011; the owner is not subject to RLS (not forced). The marts get the
  ``llmhub_api`` policy from the dbt post-hook (dbt_project/macros/row_level_security.sql),
  since dbt recreates them.

Revision ID: 0010
Revises: 0007
Create Date: 2026-11-29
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

API_ROLE = "llmhub_api"
ANALYTICS_TABLES = (
    "anomalies",
    "anomaly_feedback",
    "forecasts",
    "budgets",
    "budget_projections",
    "incidents",
)
TENANT = "current_setting('llmhub.tenant_id', true)"
OWN = f"tenant_id = {TENANT}"
# A cross-tenant incident (tenant_id '*', 0008) is shown to each tenant it touches; the API
# leaves out the columns that name the others.
VISIBLE = {"incidents": f"{OWN} or (tenant_id = '*' and {TENANT} = any(tenant_ids))"}


def upgrade() -> None:
    # Roles are cluster-wide; another migration (service roles) may create this one first.
    op.execute(
        f"do $$ begin if not exists (select from pg_roles where rolname = '{API_ROLE}') then "
        f"create role {API_ROLE} login; end if; "
        f"exception when duplicate_object or unique_violation then null; end $$"
    )
    op.execute(f"alter role {API_ROLE} login")
    op.execute("create schema if not exists api")
    op.execute(
        """
        create table api.api_keys (
            key_id text primary key,
            tenant_id text not null,
            name text not null,
            secret_sha256 text not null,
            scopes text[] not null check (scopes <@ array['ingest', 'read', 'admin']),
            role text not null check (role in ('viewer', 'editor', 'admin')),
            created_at timestamptz not null default now(),
            expires_at timestamptz,
            revoked_at timestamptz,
            replaced_by text references api.api_keys (key_id)
        )
        """
    )
    op.execute("create index api_keys_tenant_ix on api.api_keys (tenant_id)")
    op.execute(
        """
        create table api.quota_buckets (
            tenant_id text not null,
            bucket text not null,
            tokens double precision not null,
            refilled_at timestamptz not null,
            primary key (tenant_id, bucket)
        )
        """
    )
    op.execute(
        """
        create table api.quota_months (
            tenant_id text not null,
            month date not null,
            events bigint not null,
            primary key (tenant_id, month)
        )
        """
    )
    # 0 when granted, else the seconds until the tokens will be there. The row lock serialises
    # concurrent API processes on one bucket, so no token is spent twice. A batch larger than
    # the burst is granted on a full bucket and leaves it in debt (negative), repaid at the
    # rate: an OTLP exporter's 2,048-span batch must not be refused forever.
    op.execute(
        """
        create function api.take_tokens(
            p_tenant text, p_bucket text, p_n double precision,
            p_rate double precision, p_burst double precision
        ) returns double precision
        language plpgsql as $$
        declare
            now_ts timestamptz;
            avail double precision;
        begin
            insert into api.quota_buckets (tenant_id, bucket, tokens, refilled_at)
            values (p_tenant, p_bucket, p_burst, clock_timestamp())
            on conflict do nothing;
            perform 1 from api.quota_buckets
            where tenant_id = p_tenant and bucket = p_bucket for update;
            now_ts := clock_timestamp();
            select least(p_burst, tokens + p_rate * extract(epoch from now_ts - refilled_at))
            into avail
            from api.quota_buckets where tenant_id = p_tenant and bucket = p_bucket;
            if avail >= least(p_n, p_burst) then
                update api.quota_buckets set tokens = avail - p_n, refilled_at = now_ts
                where tenant_id = p_tenant and bucket = p_bucket;
                return 0;
            end if;
            update api.quota_buckets set tokens = avail, refilled_at = now_ts
            where tenant_id = p_tenant and bucket = p_bucket;
            if p_rate <= 0 then
                return 'Infinity'::double precision;
            end if;
            return (least(p_n, p_burst) - avail) / p_rate;
        end
        $$
        """
    )
    # The new month-to-date count, or NULL (nothing counted) when it would pass the limit.
    op.execute(
        """
        create function api.count_events(p_tenant text, p_n bigint, p_limit bigint)
        returns bigint
        language sql as $$
            insert into api.quota_months as m (tenant_id, month, events)
            select p_tenant, date_trunc('month', now() at time zone 'utc')::date, p_n
            where p_n <= p_limit
            on conflict (tenant_id, month) do update set events = m.events + p_n
            where m.events + p_n <= p_limit
            returning events
        $$
        """
    )
    # OTLP GenAI metric points (POST /v1/metrics): aggregates, not requests, so they have no
    # contract topic; kept as exported (histogram buckets included) under their current names.
    op.execute(
        """
        create table api.genai_metric_points (
            tenant_id text not null,
            metric text not null,
            unit text not null,
            start_at timestamptz,
            observed_at timestamptz not null,
            attributes jsonb not null,
            point_count bigint,
            point_sum double precision,
            bucket_counts bigint[],
            explicit_bounds double precision[],
            received_at timestamptz not null default now()
        )
        """
    )
    op.execute(
        "create index genai_metric_points_tenant_ix "
        "on api.genai_metric_points (tenant_id, metric, observed_at)"
    )
    op.execute("alter table api.genai_metric_points enable row level security")
    op.execute(
        f"create policy {API_ROLE}_own_tenant on api.genai_metric_points for all to {API_ROLE} "
        f"using (tenant_id = {TENANT}) with check (tenant_id = {TENANT})"
    )
    op.execute(f"grant select, insert on api.genai_metric_points to {API_ROLE}")
    op.execute(f"grant usage on schema api to {API_ROLE}")
    op.execute(f"grant select, insert, update on api.api_keys to {API_ROLE}")
    # Authentication looks a key up before the tenant is known, so the API role reads every
    # key row (hashes only); it issues and revokes keys of the caller's tenant only.
    op.execute("alter table api.api_keys enable row level security")
    op.execute(
        f"create policy {API_ROLE}_lookup on api.api_keys for select to {API_ROLE} using (true)"
    )
    op.execute(
        f"create policy {API_ROLE}_issue on api.api_keys for insert to {API_ROLE} "
        f"with check (tenant_id = {TENANT})"
    )
    op.execute(
        f"create policy {API_ROLE}_revoke on api.api_keys for update to {API_ROLE} "
        f"using (tenant_id = {TENANT}) with check (tenant_id = {TENANT})"
    )
    op.execute(f"grant select, insert, update on api.quota_buckets, api.quota_months to {API_ROLE}")
    op.execute(f"grant execute on all functions in schema api to {API_ROLE}")

    op.execute("create schema if not exists marts")
    op.execute(f"grant usage on schema marts to {API_ROLE}")
    op.execute(f"grant usage on schema analytics to {API_ROLE}")
    # incidents (0008) may come before or after this migration: guarded by to_regclass.
    for table in ANALYTICS_TABLES:
        qualified = f"analytics.{table}"
        op.execute(
            f"""
            do $$ begin
            if to_regclass('{qualified}') is not null then
                alter table {qualified} enable row level security;
                drop policy if exists {API_ROLE}_own_tenant on {qualified};
                create policy {API_ROLE}_own_tenant on {qualified} for all to {API_ROLE}
                    using ({VISIBLE.get(table, OWN)}) with check (tenant_id = {TENANT});
                grant select on {qualified} to {API_ROLE};
            end if;
            end $$
            """
        )
    op.execute(f"grant insert, update on analytics.anomaly_feedback to {API_ROLE}")


def downgrade() -> None:
    for table in ANALYTICS_TABLES:
        qualified = f"analytics.{table}"
        op.execute(
            f"""
            do $$ begin
            if to_regclass('{qualified}') is not null then
                drop policy if exists {API_ROLE}_own_tenant on {qualified};
                revoke all on {qualified} from {API_ROLE};
            end if;
            end $$
            """
        )
    op.execute("drop schema if exists api cascade")
    # Cluster-wide role: other databases may use it; revoke, never drop.
    op.execute(f"revoke usage on schema analytics, marts from {API_ROLE}")
