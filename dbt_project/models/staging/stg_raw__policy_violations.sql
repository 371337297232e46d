with

source as (

    select * from {{ source('raw', 'policy_violations') }}

),

final as (

    select
        event_id as policy_violation_id,
        occurred_at,
        tenant_id,
        asset_id,
        event_type,
        source_module,
        severity,
        schema_version,
        policy_id,
        policy_name,
        violation_type,
        action_taken,
        action_taken = 'blocked' as is_blocked,
        request_id,
        description,
        attributes,
        kafka_partition,
        kafka_offset,
        ingested_at

    from source

)

select * from final
