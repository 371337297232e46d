"""Read-only analyst roles and per-tenant row-level security on the marts.

Two NOLOGIN group roles read the published layer (schemas ``marts`` and ``seeds``) and nothing
else: no raw, staging or intermediate data, no ``public`` tables, no CREATE anywhere.

- ``analyst`` sees every tenant's rows.
- ``tenant_analyst`` sees only the rows of the tenants granted to the roles it acts as, listed in
  ``marts_access.tenant_grants`` (granted to a login role directly, or to a group role its members
  inherit from). ``marts_access.grant_tenant(role, tenant)`` records a grant and makes the role a
  member of ``tenant_analyst``; ``marts_access.revoke_tenant(role, tenant)`` undoes it.

Tenant-scoped roles are not members of ``analyst``: a row-level security policy applies to every
member of the role it names, so membership would hand them the all-tenants policy.

dbt drops and recreates mart tables, so row-level security is applied to each mart by the dbt
post-hook ``apply_row_level_security`` (dbt_project/macros/row_level_security.sql), not here: it
enables RLS (not forced, so the owner that builds the marts still sees every row), creates the two
policies and grants SELECT to both roles. Default privileges give ``analyst`` SELECT on new mart
tables; ``tenant_analyst`` gets SELECT only from the hook, together with the policies, so a mart
built without them is unreadable to tenant-scoped roles rather than readable in full.

Granting access (as a role that may grant ``tenant_analyst``, e.g. the migration's)::

    create role acme_analysts nologin;                               -- one group per tenant
    select marts_access.grant_tenant('acme_analysts', 'tenant-acme');
    create role alice login password '...' in role acme_analysts;   -- reads tenant-acme only
    create role bob login password '...' in role analyst;           -- reads every tenant
    select marts_access.revoke_tenant('acme_analysts', 'tenant-acme');

Default privileges cover tables created by the role that ran this migration; if dbt runs as
another role, also run ``alter default privileges for role <dbt role> in schema seeds grant
select on tables to analyst, tenant_analyst`` (the marts get their grants from the post-hook).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ANALYST = "analyst"
TENANT_ANALYST = "tenant_analyst"


def _create_role(name: str) -> None:
    # Roles are cluster-wide and PostgreSQL has no `create role if not exists`. Two databases
    # migrated at once can both miss the role: the loser of the race gets a unique violation.
    op.execute(
        f"do $$ begin if not exists (select from pg_roles where rolname = '{name}') then "
        f"create role {name} nologin; end if; "
        f"exception when duplicate_object or unique_violation then null; end $$"
    )


def upgrade() -> None:
    # Roles, schemas and grants in the order they depend on each other; a migration is not split.
    _create_role(ANALYST)
    _create_role(TENANT_ANALYST)
    # dbt creates these schemas too; creating them here lets the grants below exist before the
    # first build.
    op.execute("create schema if not exists marts")
    op.execute("create schema if not exists seeds")
    op.execute("create schema if not exists marts_access")
    op.execute(
        """
        create table marts_access.tenant_grants (
            grantee regrole not null,
            tenant_id text not null,
            granted_at timestamptz not null default now(),
            primary key (grantee, tenant_id)
        )
        """
    )
    # A role is kept by oid (regrole), not by name: a grant does not pass to a later role that
    # happens to reuse a dropped role's name.
    op.execute(
        "comment on table marts_access.tenant_grants is "
        "'Tenants whose mart rows a role (and every role acting as it) may read as "
        "tenant_analyst; maintained with marts_access.grant_tenant / revoke_tenant.'"
    )
    # The tenants of the roles the caller acts as (pg_has_role checks current_user). The view
    # reads tenant_grants with its owner's privileges, so tenant-scoped roles see their own
    # tenants and not who else is granted what; security_barrier keeps a caller's own
    # predicates from running before the view's filter.
    op.execute(
        """
        create view marts_access.current_tenants with (security_barrier) as
        select distinct grants.tenant_id
        from marts_access.tenant_grants as grants
        inner join pg_catalog.pg_roles as roles on grants.grantee = roles.oid
        where pg_catalog.pg_has_role(roles.oid, 'USAGE')
        """
    )
    op.execute(
        "comment on view marts_access.current_tenants is "
        "'Tenants the current role may read in the marts (the tenant_analyst policy).'"
    )
    op.execute(
        f"""
        create function marts_access.grant_tenant(grantee regrole, tenant text) returns void
        language plpgsql as $$
        begin
            execute format('grant {TENANT_ANALYST} to %s', grantee);
            insert into marts_access.tenant_grants (grantee, tenant_id)
            values (grant_tenant.grantee, tenant)
            on conflict do nothing;
        end
        $$
        """
    )
    op.execute(
        f"""
        create function marts_access.revoke_tenant(grantee regrole, tenant text) returns void
        language plpgsql as $$
        begin
            delete from marts_access.tenant_grants as g
            where g.grantee = revoke_tenant.grantee and g.tenant_id = tenant;
            if not exists (
                select from marts_access.tenant_grants as g
                where g.grantee = revoke_tenant.grantee
            ) then
                execute format('revoke {TENANT_ANALYST} from %s', grantee);
            end if;
        end
        $$
        """
    )
    for function in ("grant_tenant(regrole, text)", "revoke_tenant(regrole, text)"):
        op.execute(f"revoke execute on function marts_access.{function} from public")

    readers = f"{ANALYST}, {TENANT_ANALYST}"
    op.execute(f"grant usage on schema marts, seeds to {readers}")
    op.execute(f"grant usage on schema marts_access to {TENANT_ANALYST}")
    op.execute(f"grant select on marts_access.current_tenants to {TENANT_ANALYST}")
    # Price lists carry no tenant data.
    op.execute(f"grant select on all tables in schema seeds to {readers}")
    op.execute(f"alter default privileges in schema seeds grant select on tables to {readers}")
    # Marts already built before this migration: analyst reads all tenants anyway; the next dbt
    # run's post-hook adds the policies and tenant_analyst's SELECT.
    op.execute(f"grant select on all tables in schema marts to {ANALYST}")
    op.execute(f"alter default privileges in schema marts grant select on tables to {ANALYST}")


def downgrade() -> None:
    # The policies depend on marts_access.current_tenants: drop them and switch RLS off first.
    op.execute(
        """
        do $$
        declare
            mart regclass;
        begin
            for mart in
                select c.oid::regclass from pg_catalog.pg_class as c
                where c.relnamespace = 'marts'::regnamespace and c.relkind in ('r', 'p')
            loop
                execute format('drop policy if exists analyst_all_tenants on %s', mart);
                execute format('drop policy if exists tenant_analyst_granted_tenants on %s', mart);
                execute format('alter table %s disable row level security', mart);
            end loop;
        end $$
        """
    )
    op.execute("drop schema if exists marts_access cascade")
    # The roles are cluster-wide and other databases may still use them: revoke, never drop.
    readers = f"{ANALYST}, {TENANT_ANALYST}"
    op.execute(f"alter default privileges in schema marts revoke select on tables from {ANALYST}")
    op.execute(f"alter default privileges in schema seeds revoke select on tables from {readers}")
    op.execute(f"revoke select on all tables in schema marts from {readers}")
    op.execute(f"revoke select on all tables in schema seeds from {readers}")
    op.execute(f"revoke usage on schema marts, seeds from {readers}")
