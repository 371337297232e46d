-- The versioned history of every registered asset (type 2): what both the request enrichment
-- (as-of join) and the dim_assets mart read. A table with the join's index: every incremental
-- build of the request marts joins its window of requests to it.
{{
    config(
        materialized='table',
        indexes=[
            {'columns': ['asset_version_id'], 'unique': true},
            {'columns': ['tenant_id', 'asset_id', 'valid_from']},
        ]
    )
}}

with

registry_events as (

    select * from {{ ref('stg_raw__registry_events') }}

),

ordered_events as (

    select
        *,
        row_number() over asset_history as event_number,
        lag(
            row(asset_kind, name, version, provider, model, owner, lifecycle_status)
        ) over asset_history as previous_record

    from registry_events

    window asset_history as (
        partition by tenant_id, asset_id
        order by occurred_at, registry_event_id
    )

),

-- A version of record starts at an asset's first event and at every event that changes a
-- tracked attribute; a re-sent identical registration does not open a new version (as a dbt
-- snapshot with check_cols would not).
version_starts as (

    select *
    from ordered_events
    where
        event_number = 1
        or row(asset_kind, name, version, provider, model, owner, lifecycle_status)
        is distinct from previous_record

),

final as (

    select
        {{ surrogate_key(['tenant_id', 'asset_id', 'registry_event_id']) }} as asset_version_id,
        tenant_id,
        asset_id,
        row_number() over asset_versions as asset_version_number,
        asset_kind,
        name,
        version,
        provider,
        model,
        owner,
        lifecycle_status,
        attributes,
        registry_event_id,
        event_type as registry_event_type,
        occurred_at as valid_from,
        lead(occurred_at) over asset_versions as valid_to,
        lead(occurred_at) over asset_versions is null as is_current

    from version_starts

    window asset_versions as (
        partition by tenant_id, asset_id
        order by occurred_at, registry_event_id
    )

)

select * from final
