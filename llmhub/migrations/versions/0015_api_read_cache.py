"""API read path: cache versions that invalidate the API's in-process caches, leased query tokens.

- ``api.cache_versions``: one counter per cached source (``marts.<model>``, ``api.api_keys``),
  bumped in the transaction that changes the source, so a reader that sees the new version also
  sees the new rows. Every API process polls the table (one tiny query a second per process)
  and drops what it cached from an older version: the mart results cache (keyed by tenant,
  normalised query and mart version) and the API key lookups (a revoked or rotated key stops
  working within a poll).
- ``api.bump_cache_version(name)``: security definer, so the API role (revoking a key through
  ``DELETE /api/v1/keys/{id}``) and dbt's post-hook (dbt_project/macros/cache_version.sql) bump
  a counter they cannot otherwise write.
- A statement trigger on ``api.api_keys``: any insert, update or delete (``llmhub keys revoke``,
  ``rotate``, the API's own revoke) bumps ``api.api_keys``.
- ``api.admit_query_lease``: takes up to ``p_n`` query tokens from the tenant's shared bucket in
  one round trip (at most a tenth of a second of the tenant's rate and a quarter of its burst,
  at least one), so an API process does not have to round-trip to PostgreSQL for every query;
  returns how many it granted (0 and the wait when the bucket is empty).

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

API_ROLE = "llmhub_api"


def upgrade() -> None:
    op.execute(
        """
        create table api.cache_versions (
            name text primary key,
            version bigint not null default 1,
            changed_at timestamptz not null default now()
        )
        """
    )
    op.execute(
        """
        create function api.bump_cache_version(p_name text) returns bigint
        language sql security definer set search_path = pg_catalog, api as $$
            insert into api.cache_versions as v (name) values (p_name)
            on conflict (name) do update set version = v.version + 1, changed_at = now()
            returning version
        $$
        """
    )
    op.execute(
        """
        create function api.api_keys_changed() returns trigger
        language plpgsql as $$
        begin
            perform api.bump_cache_version('api.api_keys');
            return null;
        end
        $$
        """
    )
    op.execute(
        "create trigger api_keys_cache_version after insert or update or delete "
        "on api.api_keys for each statement execute function api.api_keys_changed()"
    )
    op.execute(
        """
        create function api.admit_query_lease(
            p_tenant text, p_n integer, p_rate double precision, p_burst double precision,
            out granted integer, out wait_s double precision,
            out rate double precision, out burst double precision
        )
        language plpgsql as $$
        declare
            avail double precision;
            now_ts timestamptz;
            n integer;
        begin
            select coalesce(q.query_rate_per_s, p_rate), coalesce(q.query_burst, p_burst)
            into rate, burst
            from api.tenant_quotas as q where q.tenant_id = p_tenant;
            if not found then
                rate := p_rate; burst := p_burst;
            end if;
            n := greatest(1, least(p_n, floor(rate * 0.1), floor(burst / 4)))::integer;
            insert into api.quota_buckets (tenant_id, bucket, tokens, refilled_at)
            values (p_tenant, 'query', burst, clock_timestamp())
            on conflict do nothing;
            perform 1 from api.quota_buckets
            where tenant_id = p_tenant and bucket = 'query' for update;
            now_ts := clock_timestamp();
            select least(burst, tokens + rate * extract(epoch from now_ts - refilled_at))
            into avail
            from api.quota_buckets where tenant_id = p_tenant and bucket = 'query';
            if avail >= least(1, burst) then
                granted := greatest(1, least(n, floor(avail)))::integer;
                wait_s := 0;
            else
                granted := 0;
                wait_s := case when rate <= 0 then 'Infinity'::double precision
                               else (least(1, burst) - avail) / rate end;
            end if;
            update api.quota_buckets set tokens = avail - granted, refilled_at = now_ts
            where tenant_id = p_tenant and bucket = 'query';
        end
        $$
        """
    )
    # Only through the definer's checks: the API role and the owner (dbt), not every role.
    op.execute("revoke execute on function api.bump_cache_version(text) from public")
    op.execute(f"grant select on api.cache_versions to {API_ROLE}")
    op.execute(
        f"grant execute on function api.bump_cache_version(text), "
        f"api.admit_query_lease(text, integer, double precision, double precision) to {API_ROLE}"
    )
    op.execute("select api.bump_cache_version('api.api_keys')")


def downgrade() -> None:
    op.execute(
        "drop function if exists "
        "api.admit_query_lease(text, integer, double precision, double precision)"
    )
    op.execute("drop trigger if exists api_keys_cache_version on api.api_keys")
    op.execute("drop function if exists api.api_keys_changed()")
    op.execute("drop function if exists api.bump_cache_version(text)")
    op.execute("drop table if exists api.cache_versions")
