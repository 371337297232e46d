{#-
    Monthly SLA report per tenant: for each SLO and UTC calendar month, requests, good requests,
    the attained level against the objective, and the error budget used. Grain slo_id x
    report_month. Export with
    `llmhub export --model fct_sla_monthly --time-column report_month OUT`.
-#}
with

daily as (

    select * from {{ ref('fct_slo_sli_daily') }}

),

monthly as (

    select
        slo_id,
        tenant_id,
        asset_id,
        slo_kind,
        objective,
        date_trunc('month', sli_date)::date as report_month,
        sum(request_count) as request_count,
        sum(good_count) as good_count,
        sum(bad_count) as bad_count,
        count(*) as days_with_traffic,
        count(*) filter (where not is_objective_met) as days_objective_missed

    from daily
    group by slo_id, tenant_id, asset_id, slo_kind, objective, date_trunc('month', sli_date)

),

final as (

    select
        {{ surrogate_key(['slo_id', "to_char(report_month, 'YYYY-MM')"]) }} as sla_report_key,
        tenant_id,
        asset_id,
        slo_id,
        slo_kind,
        report_month,
        objective,
        request_count,
        good_count,
        bad_count,
        good_count::float / request_count as attained,
        good_count::float / request_count >= objective as is_sla_met,
        bad_count / nullif((1 - objective) * request_count, 0) as error_budget_used_ratio,
        days_with_traffic,
        days_objective_missed

    from monthly

)

select * from final
