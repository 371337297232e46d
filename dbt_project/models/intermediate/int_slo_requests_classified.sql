{#-
    Every request an SLO covers, classified good or bad by that SLO: availability counts a
    successful request good; latency counts a request good when latency_ms is at or under the
    threshold (so "p95 under 2 s" is the objective "95% of requests at or under 2 s"). A request
    is covered by each SLO of its tenant whose asset_id is '*' or its application.
-#}
with

objectives as (

    select * from {{ ref('stg_alerting__slo_objectives') }}

),

requests as (

    select * from {{ ref('stg_raw__llm_requests') }}

),

final as (

    select
        objectives.slo_id,
        objectives.tenant_id,
        objectives.asset_id,
        objectives.slo_kind,
        objectives.objective,
        objectives.latency_percentile,
        objectives.latency_threshold_ms,
        objectives.window_days,
        requests.request_id,
        requests.occurred_at,
        requests.latency_ms,
        case
            when objectives.slo_kind = 'availability' then requests.is_success
            else requests.latency_ms <= objectives.latency_threshold_ms
        end as is_good

    from objectives
    inner join requests
        on
            objectives.tenant_id = requests.tenant_id
            and (objectives.asset_id = '*' or objectives.asset_id = requests.asset_id)

)

select * from final
