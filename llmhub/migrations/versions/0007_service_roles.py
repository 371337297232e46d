"""One group role per service instead of one owner role shared by all.

NOLOGIN group roles, each with the least it needs in the hub database; a deployment gives each
service a login role that is a member of its group (terraform does, with a generated password per
service in Secrets Manager; the local stack keeps using the trust-authenticated superuser):

- ``llmhub_ingest`` (from 0003, unchanged): appends raw rows and dead letters, moves its own
  offsets. It reads nothing else and owns nothing, so it cannot drop or truncate a table.
- ``llmhub_api``: USAGE on ``marts`` and ``analytics``, nothing on ``raw``, no CREATE anywhere.
  It reads a table only through that table's row-level security: the dbt post-hook
  (dbt_project/macros/row_level_security.sql) and the API's migration grant SELECT together with
  the tenant policies, never one without the other.
- ``llmhub_dagster``: runs the assets: ingestion (member of ``llmhub_ingest``), dbt (reads raw as
  a member of ``llmhub_raw_reader``, owns what dbt builds in ``staging``, ``intermediate``,
  ``marts`` and ``seeds``, so a rebuild can replace it), the ML outputs (DML on ``analytics``),
  retention (``raw.drop_expired_chunks``, below, and deleting old dead letters).
- ``llmhub_mlflow``: nothing in this database: MLflow keeps its state in its own database,
  which its role owns (terraform).

``drop_chunks`` needs the hypertable's owner; rather than hand Dagster the raw tables,
``raw.drop_expired_chunks(table, keep_days)`` runs it as the migration's role (SECURITY DEFINER,
fixed search_path, raw hypertables only), executable by ``llmhub_dagster`` alone.

Relations dbt built before this migration are handed to ``llmhub_dagster``; run the migration
as the role that owns them (the database owner).

Revision ID: 0007
Revises: 0005
Create Date: 2026-11-29
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

INGEST = "llmhub_ingest"
API = "llmhub_api"
DAGSTER = "llmhub_dagster"
MLFLOW = "llmhub_mlflow"
RAW_READER = "llmhub_raw_reader"
DBT_SCHEMAS = ("staging", "intermediate", "marts", "seeds")
DBT_SCHEMA_LIST = ", ".join(f"'{schema}'" for schema in DBT_SCHEMAS)


def _create_role(name: str) -> None:
    # Roles are cluster-wide and PostgreSQL has no `create role if not exists`; two databases
    # migrated at once can both miss the role, and the loser gets a unique violation. A role
    # that exists (another migration may make llmhub_api a login role) keeps its attributes.
    op.execute(
        f"do $$ begin if not exists (select from pg_roles where rolname = '{name}') then "
        f"create role {name} nologin; end if; "
        f"exception when duplicate_object or unique_violation then null; end $$"
    )


def upgrade() -> None:
    for role in (INGEST, API, DAGSTER, MLFLOW):
        _create_role(role)
    op.execute("create schema if not exists analytics")
    for schema in DBT_SCHEMAS:
        op.execute(f"create schema if not exists {schema}")

    # API: schema usage only; table grants arrive with their row-level security.
    op.execute(f"grant usage on schema marts, analytics to {API}")

    # Dagster: ingestion and dbt's reads through the existing groups.
    op.execute(f"grant {INGEST}, {RAW_READER} to {DAGSTER}")
    op.execute(f"grant delete on raw.dead_letter to {DAGSTER}")
    # dbt creates, replaces and grants its relations; the RLS post-hook names
    # marts_access.current_tenants in its policies.
    op.execute(f"grant usage, create on schema {', '.join(DBT_SCHEMAS)} to {DAGSTER}")
    op.execute(f"grant usage on schema marts_access to {DAGSTER}")
    op.execute(f"grant select on marts_access.current_tenants to {DAGSTER}")
    # Handing a relation to a role takes membership in it. The role that created llmhub_dagster
    # holds its admin option (PostgreSQL 16+), enough to grant it to itself; in production the
    # database setup makes the migration role a member already (infra/terraform).
    op.execute(
        f"""
        do $$ begin
            if not pg_catalog.pg_has_role(current_user, '{DAGSTER}', 'MEMBER') then
                execute format('grant {DAGSTER} to %I', current_user);
            end if;
        end $$
        """
    )
    op.execute(
        f"""
        do $$
        declare
            rel record;
        begin
            for rel in
                select c.oid::regclass as name, c.relkind
                from pg_catalog.pg_class as c
                where c.relnamespace::regnamespace::text in ({DBT_SCHEMA_LIST})
                    and c.relkind in ('r', 'p', 'v', 'm')
            loop
                execute format('alter %s %s owner to {DAGSTER}',
                    case rel.relkind when 'v' then 'view' when 'm' then 'materialized view'
                        else 'table' end,
                    rel.name);
            end loop;
        end $$
        """
    )
    # The ML assets publish with upserts and replace windows.
    op.execute(f"grant usage on schema analytics to {DAGSTER}")
    op.execute(
        f"grant select, insert, update, delete on all tables in schema analytics to {DAGSTER}"
    )
    op.execute(
        "alter default privileges in schema analytics "
        f"grant select, insert, update, delete on tables to {DAGSTER}"
    )

    op.execute(
        """
        create function raw.drop_expired_chunks(p_table text, p_keep_days integer)
        returns setof text
        language plpgsql
        security definer
        set search_path = pg_catalog, public
        as $$
        declare
            target regclass := to_regclass(format('raw.%I', p_table));
        begin
            if p_keep_days is null or p_keep_days <= 0 then
                raise exception 'retention of raw.% must be positive, got %', p_table, p_keep_days;
            end if;
            if target is null or not exists (
                select from timescaledb_information.hypertables
                where hypertable_schema = 'raw' and hypertable_name = p_table
            ) then
                raise exception 'raw.% is not a raw hypertable', p_table;
            end if;
            return query
                select c::text
                from drop_chunks(target, older_than => now() - make_interval(days => p_keep_days))
                    as c;
        end
        $$
        """
    )
    op.execute("revoke execute on function raw.drop_expired_chunks(text, integer) from public")
    op.execute(f"grant execute on function raw.drop_expired_chunks(text, integer) to {DAGSTER}")


def downgrade() -> None:
    op.execute("drop function if exists raw.drop_expired_chunks(text, integer)")
    op.execute(
        f"""
        do $$
        declare
            rel record;
        begin
            for rel in
                select c.oid::regclass as name, c.relkind
                from pg_catalog.pg_class as c
                where c.relowner = '{DAGSTER}'::regrole
                    and c.relkind in ('r', 'p', 'v', 'm')
            loop
                execute format('alter %s %s owner to %I',
                    case rel.relkind when 'v' then 'view' when 'm' then 'materialized view'
                        else 'table' end,
                    rel.name, current_user);
            end loop;
        end $$
        """
    )
    # Cluster-wide roles: other databases may still use them. Revoke, never drop.
    op.execute(
        f"alter default privileges in schema analytics "
        f"revoke select, insert, update, delete on tables from {DAGSTER}"
    )
    op.execute(f"revoke all on all tables in schema analytics from {DAGSTER}")
    op.execute(f"revoke usage on schema analytics from {DAGSTER}")
    op.execute(f"revoke select on marts_access.current_tenants from {DAGSTER}")
    op.execute(f"revoke usage on schema marts_access from {DAGSTER}")
    op.execute(f"revoke usage, create on schema {', '.join(DBT_SCHEMAS)} from {DAGSTER}")
    op.execute(f"revoke delete on raw.dead_letter from {DAGSTER}")
    op.execute(f"revoke {INGEST}, {RAW_READER} from {DAGSTER}")
    op.execute(f"revoke usage on schema marts, analytics from {API}")
