{#- Daily service level indicator per SLO, over the last 90 UTC days of raw requests. -#}
with

classified as (

    select * from {{ ref('int_slo_requests_classified') }}
    where occurred_at >= {{ utc_bucket_floor('now()', 'day') }} - interval '90 days'

),

aggregated as (

    select
        slo_id,
        tenant_id,
        asset_id,
        slo_kind,
        objective,
        latency_percentile,
        latency_threshold_ms,
        {{ utc_date('occurred_at') }} as sli_date,
        count(*) as request_count,
        count(*) filter (where is_good) as good_count,
        percentile_cont(coalesce(latency_percentile, 0.5)) within group (
            order by latency_ms
        ) as latency_pn_ms

    from classified
    group by
        slo_id, tenant_id, asset_id, slo_kind, objective, latency_percentile,
        latency_threshold_ms, {{ utc_date('occurred_at') }}

),

final as (

    select
        {{ surrogate_key(['slo_id', "to_char(sli_date, 'YYYY-MM-DD')"]) }} as slo_sli_daily_key,
        slo_id,
        tenant_id,
        asset_id,
        slo_kind,
        objective,
        latency_percentile,
        latency_threshold_ms,
        sli_date,
        request_count,
        good_count,
        request_count - good_count as bad_count,
        good_count::float / request_count as sli,
        latency_pn_ms,
        good_count::float / request_count >= objective as is_objective_met

    from aggregated

)

select * from final
