{{
    config(
        indexes=[
            {'columns': ['asset_version_id'], 'unique': true},
            {'columns': ['tenant_id', 'model', 'valid_from']},
        ]
    )
}}

with

assets as (

    select * from {{ ref('dim_assets') }}

),

final as (

    select
        asset_version_id,
        tenant_id,
        asset_id,
        asset_version_number,
        name,
        version,
        provider,
        model,
        owner,
        lifecycle_status,
        attributes,
        registry_event_id,
        registry_event_type,
        valid_from,
        valid_to,
        is_current

    from assets
    where asset_kind = 'model'

)

select * from final
