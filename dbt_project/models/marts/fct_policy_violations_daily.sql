{{
    config(
        indexes=[
            {'columns': ['policy_violation_day_key'], 'unique': true},
            {'columns': ['tenant_id', 'violation_date']},
            {'columns': ['policy_id', 'violation_date']},
        ]
    )
}}

with

policy_violations as (

    select * from {{ ref('stg_raw__policy_violations') }}

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

violations_daily as (

    select
        tenant_id,
        asset_id,
        policy_id,
        severity,
        {{ utc_date('occurred_at') }} as violation_date,
        -- A policy's display name can be edited; the mart shows the latest one seen that day.
        (array_agg(policy_name order by occurred_at desc, policy_violation_id desc))[1]
            as policy_name,
        count(*) as violation_count,
        count(*) filter (where action_taken = 'blocked') as blocked_count,
        count(*) filter (where action_taken = 'redacted') as redacted_count,
        count(*) filter (where action_taken = 'flagged') as flagged_count,
        count(*) filter (where action_taken = 'allowed') as allowed_count,
        count(distinct request_id) as affected_request_count

    from policy_violations
    group by tenant_id, asset_id, policy_id, severity, {{ utc_date('occurred_at') }}

),

final as (

    select
        {{ surrogate_key([
            'violations_daily.tenant_id',
            'violations_daily.asset_id',
            'violations_daily.policy_id',
            'violations_daily.severity',
            "to_char(violations_daily.violation_date, 'YYYY-MM-DD')",
        ]) }} as policy_violation_day_key,
        violations_daily.tenant_id,
        violations_daily.asset_id,
        violations_daily.policy_id,
        violations_daily.policy_name,
        violations_daily.severity,
        violations_daily.violation_date,
        violations_daily.violation_count,
        violations_daily.blocked_count,
        violations_daily.redacted_count,
        violations_daily.flagged_count,
        violations_daily.allowed_count,
        violations_daily.affected_request_count,
        coalesce(asset_requests.request_count, 0) as request_count,
        round(
            violations_daily.violation_count * 1000.0 / nullif(asset_requests.request_count, 0),
            6
        ) as violations_per_1k_requests

    from violations_daily
    left join asset_requests
        on
            violations_daily.tenant_id = asset_requests.tenant_id
            and violations_daily.asset_id = asset_requests.asset_id
            and violations_daily.violation_date = asset_requests.request_date

)

select * from final
