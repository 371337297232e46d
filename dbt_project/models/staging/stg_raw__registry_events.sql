with

source as (

    select * from {{ source('raw', 'registry_events') }}

),

final as (

    select
        event_id as registry_event_id,
        occurred_at,
        tenant_id,
        asset_id,
        event_type,
        source_module,
        severity,
        schema_version,
        asset_kind,
        name,
        version,
        provider,
        model,
        owner,
        lifecycle_status,
        attributes,
        kafka_partition,
        kafka_offset,
        ingested_at

    from source

)

select * from final
