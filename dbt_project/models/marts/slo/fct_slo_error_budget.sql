{#-
    Error budget of each SLO over its rolling window (window_days up to now): the bad requests
    the objective allows, those spent, and what remains (1 = untouched, 0 = spent, negative =
    overspent). Grain slo_id.
-#}
with

objectives as (

    select * from {{ ref('stg_alerting__slo_objectives') }}

),

classified as (

    select * from {{ ref('int_slo_requests_classified') }}
    where occurred_at >= now() - make_interval(days => window_days)

),

spent as (

    select
        slo_id,
        count(*) as request_count,
        count(*) filter (where not is_good) as bad_count

    from classified
    group by slo_id

),

final as (

    select
        objectives.slo_id,
        objectives.tenant_id,
        objectives.asset_id,
        objectives.slo_kind,
        objectives.objective,
        objectives.window_days,
        now() - make_interval(days => objectives.window_days) as window_start_at,
        now() as evaluated_at,
        coalesce(spent.request_count, 0) as request_count,
        coalesce(spent.bad_count, 0) as bad_count,
        (1 - objectives.objective) * coalesce(spent.request_count, 0) as allowed_bad_count,
        case
            when coalesce(spent.request_count, 0) = 0 then 1.0
            else 1 - spent.bad_count / ((1 - objectives.objective) * spent.request_count)
        end as error_budget_remaining_ratio

    from objectives
    left join spent on objectives.slo_id = spent.slo_id

)

select * from final
