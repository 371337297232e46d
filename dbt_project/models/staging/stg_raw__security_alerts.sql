with

source as (

    select * from {{ source('raw', 'security_alerts') }}

),

final as (

    select
        event_id as security_alert_id,
        occurred_at,
        tenant_id,
        asset_id,
        event_type,
        source_module,
        severity,
        schema_version,
        alert_type,
        detector,
        action_taken,
        action_taken = 'blocked' as is_blocked,
        confidence,
        request_id,
        description,
        attributes,
        kafka_partition,
        kafka_offset,
        ingested_at

    from source

)

select * from final
