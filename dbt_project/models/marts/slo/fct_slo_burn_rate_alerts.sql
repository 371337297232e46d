{#-
    Multiwindow, multi-burn-rate SLO alerts (Google SRE workbook, chapter 5): the burn rate of a
    window is its bad-request ratio divided by the error budget ratio (1 - objective); an alert
    fires when both its long and its short window burn above the threshold.

    - page:   1 h and 5 min above 14.4x (2% of a 30-day budget spent in an hour), critical;
    - ticket: 6 h and 30 min above 6x (5% of the budget in six hours), warning.

    The short window makes the alert stop soon after the burn stops. Evaluated at now(); grain
    slo_id x alert_window (both rows always present, is_firing says which fire).
-#}
with

objectives as (

    select * from {{ ref('stg_alerting__slo_objectives') }}

),

recent as (

    select * from {{ ref('int_slo_requests_classified') }}
    where occurred_at >= now() - interval '6 hours' and occurred_at < now()

),

windows as (

    select *
    from (
        values
        ('page', interval '1 hour', interval '5 minutes', 14.4, 'critical'),
        ('ticket', interval '6 hours', interval '30 minutes', 6.0, 'warning')
    ) as w (alert_window, long_window, short_window, burn_rate_threshold, severity)

),

ratios as (

    select
        objectives.slo_id,
        windows.alert_window,
        count(recent.request_id) filter (
            where recent.occurred_at >= now() - windows.long_window
        ) as long_count,
        count(recent.request_id) filter (
            where recent.occurred_at >= now() - windows.long_window and not recent.is_good
        ) as long_bad_count,
        count(recent.request_id) filter (
            where recent.occurred_at >= now() - windows.short_window
        ) as short_count,
        count(recent.request_id) filter (
            where recent.occurred_at >= now() - windows.short_window and not recent.is_good
        ) as short_bad_count

    from objectives
    cross join windows
    left join recent on objectives.slo_id = recent.slo_id
    group by objectives.slo_id, windows.alert_window

),

rated as (

    select
        {{ surrogate_key(['objectives.slo_id', 'windows.alert_window']) }} as slo_burn_alert_key,
        objectives.slo_id,
        objectives.tenant_id,
        objectives.asset_id,
        objectives.slo_kind,
        objectives.objective,
        windows.alert_window,
        windows.severity,
        windows.burn_rate_threshold,
        ratios.long_count,
        ratios.long_bad_count,
        ratios.short_count,
        ratios.short_bad_count,
        coalesce(
            ratios.long_bad_count::float / nullif(ratios.long_count, 0), 0
        ) / (1 - objectives.objective) as burn_rate_long,
        coalesce(
            ratios.short_bad_count::float / nullif(ratios.short_count, 0), 0
        ) / (1 - objectives.objective) as burn_rate_short,
        now() as evaluated_at

    from ratios
    inner join objectives on ratios.slo_id = objectives.slo_id
    inner join windows on ratios.alert_window = windows.alert_window

),

final as (

    select
        *,
        burn_rate_long >= burn_rate_threshold
        and burn_rate_short >= burn_rate_threshold as is_firing

    from rated

)

select * from final
