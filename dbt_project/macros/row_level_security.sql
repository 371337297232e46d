{#-
    Row-level security of a mart, as a post-hook (dbt_project.yml, every model under marts/).

    dbt drops and recreates table marts on every run (and on --full-refresh the incremental
    ones), which drops their policies and grants, so they are (re)applied after each build, in
    the model's transaction: a rebuilt mart never becomes visible without them.

    - row-level security enabled, not forced: the owner that builds the marts (dbt) and its
      tests still see every row;
    - policy analyst_all_tenants: members of `analyst` read every tenant;
    - policy tenant_analyst_granted_tenants: members of `tenant_analyst` read the tenants that
      marts_access.current_tenants lists for them (marts_access.tenant_grants);
    - policy llmhub_api_current_tenant: the HTTP API's role reads the one tenant its
      transaction names in the setting llmhub.tenant_id (set from the authenticated caller);
    - SELECT granted to the three roles; nobody else has a policy, so any other role reads nothing.

    The roles and the marts_access schema come from migrations 0004 and 0010 (`llmhub db migrate`).
    Existing policies are left alone unless their comment names another version, so an
    ordinary incremental run takes no table lock for them; bump `version` when a policy changes.
-#}
{% macro apply_row_level_security() -%}
    {%- set version = 'llmhub row-level security v2' -%}
    {%- set policies = {
        'analyst_all_tenants': 'for select to analyst using (true)',
        'tenant_analyst_granted_tenants':
            'for select to tenant_analyst using '
            ~ '(tenant_id in (select tenant_id from marts_access.current_tenants))',
        'llmhub_api_current_tenant':
            'for select to llmhub_api using '
            ~ "(tenant_id = current_setting(''llmhub.tenant_id'', true))",
    } -%}
do $rls$
declare
    mart regclass := '{{ this.include(database=false) }}'::regclass;
begin
    if to_regclass('marts_access.current_tenants') is null
        or (select count(*) from pg_catalog.pg_roles
            where rolname in ('analyst', 'tenant_analyst', 'llmhub_api')) < 3 then
        raise exception 'row-level security of %: run `llmhub db migrate` first (roles '
            'analyst, tenant_analyst, llmhub_api or schema marts_access are missing)', mart;
    end if;
    if not exists (
        select from pg_catalog.pg_attribute
        where attrelid = mart and attname = 'tenant_id' and attnum > 0 and not attisdropped
    ) then
        raise exception 'row-level security of %: marts need a tenant_id column', mart;
    end if;
    if not (select relrowsecurity from pg_catalog.pg_class where oid = mart) then
        execute format('alter table %s enable row level security', mart);
    end if;
    {%- for name, definition in policies.items() %}
    if coalesce((
        select obj_description(oid, 'pg_policy') from pg_catalog.pg_policy
        where polrelid = mart and polname = '{{ name }}'
    ), '') <> '{{ version }}' then
        execute format('drop policy if exists {{ name }} on %s', mart);
        execute format('create policy {{ name }} on %s {{ definition }}', mart);
        execute format('comment on policy {{ name }} on %s is %L', mart, '{{ version }}');
    end if;
    {%- endfor %}
    execute format('grant select on %s to analyst, tenant_analyst, llmhub_api', mart);
end
$rls$
{%- endmacro %}
