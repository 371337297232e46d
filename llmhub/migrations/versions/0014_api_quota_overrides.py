"""API: per-tenant quota overrides, one quota round trip per request, feedback by API subject.

- ``api.tenant_quotas``: a tenant's own limits (ingest events/s and burst, monthly events,
  queries/s and burst); a null column falls back to the API's configured default, which the
  caller passes in. Managed with ``llmhub quotas``.
- ``api.admit_ingest`` / ``api.admit_query``: the tenant's limits (override or default), the
  token bucket and, for ingestion, the monthly count, in one call: one database round trip
  per request instead of two (``take_tokens`` and ``count_events`` stay, and do the work).
- ``analytics.stamp_feedback_author`` (0011) attributes a verdict written by the API role to
  the credential behind it: the API sets ``llmhub.subject`` (``key:<key id>`` or
  ``sub:<JWT subject>``) in the feedback transaction and the row reads
  ``llmhub_api/key:<key id>``. Only the API role's writes take the setting; every other role's
  verdict is still stamped with ``current_user``, so no analyst can claim another's name.

Revision ID: 0014
Revises: 0011
Create Date: 2026-11-29
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

API_ROLE = "llmhub_api"


def upgrade() -> None:
    op.execute(
        """
        create table api.tenant_quotas (
            tenant_id text primary key,
            ingest_rate_per_s double precision check (ingest_rate_per_s >= 0),
            ingest_burst double precision check (ingest_burst >= 0),
            monthly_events bigint check (monthly_events >= 0),
            query_rate_per_s double precision check (query_rate_per_s >= 0),
            query_burst double precision check (query_burst >= 0),
            updated_at timestamptz not null default now()
        )
        """
    )
    # (wait seconds, 0 when granted; monthly limit when the month is full, else null).
    op.execute(
        """
        create function api.admit_ingest(
            p_tenant text, p_n bigint, p_accepted bigint,
            p_rate double precision, p_burst double precision, p_monthly bigint,
            out wait_s double precision, out month_full_at bigint
        )
        language plpgsql as $$
        declare
            rate double precision := p_rate;
            burst double precision := p_burst;
            monthly bigint := p_monthly;
        begin
            select coalesce(q.ingest_rate_per_s, p_rate), coalesce(q.ingest_burst, p_burst),
                   coalesce(q.monthly_events, p_monthly)
            into rate, burst, monthly
            from api.tenant_quotas as q where q.tenant_id = p_tenant;
            if not found then
                rate := p_rate; burst := p_burst; monthly := p_monthly;
            end if;
            wait_s := 0;
            if p_n > 0 then
                wait_s := api.take_tokens(p_tenant, 'ingest', p_n, rate, burst);
            end if;
            if wait_s = 0 and p_accepted > 0
               and api.count_events(p_tenant, p_accepted, monthly) is null then
                month_full_at := monthly;
            end if;
        end
        $$
        """
    )
    op.execute(
        """
        create function api.admit_query(
            p_tenant text, p_rate double precision, p_burst double precision,
            out wait_s double precision, out rate double precision, out burst double precision
        )
        language plpgsql as $$
        begin
            select coalesce(q.query_rate_per_s, p_rate), coalesce(q.query_burst, p_burst)
            into rate, burst
            from api.tenant_quotas as q where q.tenant_id = p_tenant;
            if not found then
                rate := p_rate; burst := p_burst;
            end if;
            wait_s := api.take_tokens(p_tenant, 'query', 1, rate, burst);
        end
        $$
        """
    )
    op.execute(f"grant select on api.tenant_quotas to {API_ROLE}")
    op.execute(
        f"grant execute on function api.admit_ingest(text, bigint, bigint, double precision, "
        f"double precision, bigint), api.admit_query(text, double precision, double precision) "
        f"to {API_ROLE}"
    )
    op.execute(
        f"""
        create or replace function analytics.stamp_feedback_author() returns trigger
        language plpgsql as $$
        declare
            subject text := nullif(current_setting('llmhub.subject', true), '');
        begin
            if current_user = '{API_ROLE}' and subject is not null then
                new.noted_by := current_user || '/' || subject;
            else
                new.noted_by := current_user;
            end if;
            new.noted_at := now();
            return new;
        end
        $$
        """
    )


def downgrade() -> None:
    op.execute(
        """
        create or replace function analytics.stamp_feedback_author() returns trigger
        language plpgsql as $$
        begin
            new.noted_by := current_user;
            new.noted_at := now();
            return new;
        end
        $$
        """
    )
    op.execute("drop function if exists api.admit_query(text, double precision, double precision)")
    op.execute(
        "drop function if exists api.admit_ingest(text, bigint, bigint, double precision, "
        "double precision, bigint)"
    )
    op.execute("drop table if exists api.tenant_quotas")
