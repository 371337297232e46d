with

source as (

    select * from {{ source('alerting', 'outbox') }}

),

final as (

    select
        notification_key,
        route_id,
        tenant_id,
        channel,
        alert_key,
        event as notification_event,
        severity,
        status as delivery_status,
        attempts as attempt_count,
        last_error,
        occurred_at,
        created_at,
        sent_at,
        acked_at,
        resolved_at

    from source

)

select * from final
