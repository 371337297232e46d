-- Each asset's versions of record tile time without gaps or overlaps: every version ends where
-- the next begins, exactly the last one is open, and is_current marks it.
with

assets as (

    select * from {{ ref('dim_assets') }}

),

checked as (

    select
        tenant_id,
        asset_id,
        asset_version_id,
        asset_version_number,
        valid_from,
        valid_to,
        is_current,
        lead(valid_from) over asset_versions as next_valid_from,
        count(*) filter (where is_current) over (partition by tenant_id, asset_id)
            as current_versions

    from assets

    window asset_versions as (
        partition by tenant_id, asset_id
        order by asset_version_number
    )

),

final as (

    select *
    from checked
    where
        valid_to is distinct from next_valid_from
        or current_versions != 1
        or is_current != (next_valid_from is null)

)

select * from final
