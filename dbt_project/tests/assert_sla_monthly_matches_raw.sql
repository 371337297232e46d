{{ config(meta={'dagster': {'ref': {'name': 'fct_sla_monthly'}}}) }}

-- The monthly SLA report equals a recount from raw: for every SLO and UTC month within the
-- report's 90-day horizon, covered and good requests counted straight from raw.llm_requests
-- (availability: status ok; latency: latency_ms <= threshold). Months cut by the horizon
-- are compared over the same days the report covers.
with

objectives as (

    select * from {{ source('alerting', 'slo_objectives') }}

),

requests as (

    select * from {{ source('raw', 'llm_requests') }}
    where occurred_at >= {{ utc_bucket_floor('now()', 'day') }} - interval '90 days'

),

report as (

    select * from {{ ref('fct_sla_monthly') }}

),

recount as (

    select
        objectives.slo_id,
        date_trunc('month', {{ utc_date('requests.occurred_at') }})::date as report_month,
        count(*) as request_count,
        count(*) filter (
            where case
                when objectives.kind = 'availability' then requests.status = 'ok'
                else requests.latency_ms <= objectives.latency_threshold_ms
            end
        ) as good_count

    from objectives
    inner join requests
        on
            objectives.tenant_id = requests.tenant_id
            and (objectives.asset_id = '*' or objectives.asset_id = requests.asset_id)
    group by objectives.slo_id, date_trunc('month', {{ utc_date('requests.occurred_at') }})

),

final as (

    select
        coalesce(recount.slo_id, report.slo_id) as slo_id,
        coalesce(recount.report_month, report.report_month) as report_month,
        recount.request_count as raw_requests,
        report.request_count as report_requests,
        recount.good_count as raw_good,
        report.good_count as report_good

    from recount
    full outer join report
        on recount.slo_id = report.slo_id and recount.report_month = report.report_month
    where
        recount.request_count is distinct from report.request_count
        or recount.good_count is distinct from report.good_count

)

select * from final
