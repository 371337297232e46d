{#-
    Alert delivery per tenant, channel and UTC day (of the notification's creation): volume,
    outcome, attempts, delivery latency (created -> sent, group wait included; and alert ->
    sent), and MTTA / MTTR of the alerts triggered that day (alert start -> acknowledged /
    resolved). Grain tenant_id x channel x notification_date.
-#}
with

notifications as (

    select * from {{ ref('stg_alerting__notifications') }}

),

attempts as (

    select * from {{ ref('stg_alerting__delivery_attempts') }}

),

attempts_per_notification as (

    select
        notification_key,
        count(*) as attempt_count,
        count(*) filter (where outcome = 'retry') as retry_count

    from attempts
    group by notification_key

),

enriched as (

    select
        notifications.*,
        coalesce(attempts_per_notification.attempt_count, 0) as attempts_recorded,
        coalesce(attempts_per_notification.retry_count, 0) as retries_recorded,
        extract(epoch from notifications.sent_at - notifications.created_at) as delivery_s,
        extract(epoch from notifications.sent_at - notifications.occurred_at)
            as alert_to_delivery_s,
        extract(epoch from notifications.acked_at - notifications.occurred_at) as ack_s,
        extract(epoch from notifications.resolved_at - notifications.occurred_at) as resolve_s

    from notifications
    left join attempts_per_notification
        on notifications.notification_key = attempts_per_notification.notification_key

),

final as (

    select
        {{ surrogate_key([
            'tenant_id', 'channel', "to_char(" ~ utc_date('created_at') ~ ", 'YYYY-MM-DD')"
        ]) }} as alert_delivery_daily_key,
        tenant_id,
        channel,
        {{ utc_date('created_at') }} as notification_date,
        count(*) as notification_count,
        count(*) filter (where delivery_status = 'sent') as sent_count,
        count(*) filter (where delivery_status = 'failed') as failed_count,
        count(*) filter (where delivery_status = 'pending') as pending_count,
        sum(attempts_recorded) as attempt_count,
        sum(retries_recorded) as retry_count,
        percentile_cont(0.5) within group (order by delivery_s) as delivery_p50_s,
        percentile_cont(0.95) within group (order by delivery_s) as delivery_p95_s,
        percentile_cont(0.95) within group (order by alert_to_delivery_s)
            as alert_to_delivery_p95_s,
        avg(ack_s) filter (where notification_event = 'trigger') / 60 as mtta_minutes,
        avg(resolve_s) filter (where notification_event = 'trigger') / 60 as mttr_minutes

    from enriched
    group by tenant_id, channel, {{ utc_date('created_at') }}

)

select * from final
