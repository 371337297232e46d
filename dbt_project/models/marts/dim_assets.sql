{{
    config(
        indexes=[
            {'columns': ['asset_version_id'], 'unique': true},
            {'columns': ['tenant_id', 'asset_id', 'valid_from']},
        ]
    )
}}

with

asset_versions as (

    select * from {{ ref('int_registry__asset_versions') }}

),

final as (

    select * from asset_versions

)

select * from final
