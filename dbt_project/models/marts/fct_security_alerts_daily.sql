{{
    config(
        indexes=[
            {'columns': ['security_alert_day_key'], 'unique': true},
            {'columns': ['tenant_id', 'alert_date']},
            {'columns': ['alert_type', 'alert_date']},
        ]
    )
}}

with

security_alerts as (

    select * from {{ ref('stg_raw__security_alerts') }}

),

requests_daily as (

    select * from {{ ref('fct_llm_requests_daily') }}

),

asset_requests as (

    select
        tenant_id,
        asset_id,
        request_date,
        sum(request_count)::bigint as request_count

    from requests_daily
    group by tenant_id, asset_id, request_date

),

alerts_daily as (

    select
        tenant_id,
        asset_id,
        alert_type,
        severity,
        {{ utc_date('occurred_at') }} as alert_date,
        count(*) as alert_count,
        count(*) filter (where action_taken = 'blocked') as blocked_count,
        count(*) filter (where action_taken = 'redacted') as redacted_count,
        count(*) filter (where action_taken = 'flagged') as flagged_count,
        count(*) filter (where action_taken = 'allowed') as allowed_count,
        count(distinct request_id) as affected_request_count,
        round(avg(confidence::numeric), 6) as confidence_avg,
        max(confidence) as confidence_max

    from security_alerts
    group by tenant_id, asset_id, alert_type, severity, {{ utc_date('occurred_at') }}

),

final as (

    select
        {{ surrogate_key([
            'alerts_daily.tenant_id',
            'alerts_daily.asset_id',
            'alerts_daily.alert_type',
            'alerts_daily.severity',
            "to_char(alerts_daily.alert_date, 'YYYY-MM-DD')",
        ]) }} as security_alert_day_key,
        alerts_daily.tenant_id,
        alerts_daily.asset_id,
        alerts_daily.alert_type,
        alerts_daily.severity,
        alerts_daily.alert_date,
        alerts_daily.alert_count,
        alerts_daily.blocked_count,
        alerts_daily.redacted_count,
        alerts_daily.flagged_count,
        alerts_daily.allowed_count,
        alerts_daily.affected_request_count,
        alerts_daily.confidence_avg,
        alerts_daily.confidence_max,
        coalesce(asset_requests.request_count, 0) as request_count,
        round(
            alerts_daily.alert_count * 1000.0 / nullif(asset_requests.request_count, 0), 6
        ) as alerts_per_1k_requests

    from alerts_daily
    left join asset_requests
        on
            alerts_daily.tenant_id = asset_requests.tenant_id
            and alerts_daily.asset_id = asset_requests.asset_id
            and alerts_daily.alert_date = asset_requests.request_date

)

select * from final
