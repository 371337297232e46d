with

source as (

    select * from {{ source('alerting', 'delivery_attempts') }}

),

final as (

    select
        attempt_id as delivery_attempt_id,
        notification_key,
        tenant_id,
        channel,
        attempt as attempt_number,
        started_at,
        finished_at,
        outcome,
        http_status,
        retry_after_s,
        extract(epoch from finished_at - started_at) * 1000 as duration_ms

    from source

)

select * from final
