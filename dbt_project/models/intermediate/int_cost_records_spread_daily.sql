-- Billed cost per tenant x billing asset x provider x model x UTC day. A record covering
-- several days (billing_period_start_date..end_date) is spread evenly over them; a record
-- without a period counts on the UTC day it was sent. A line item re-sent with a new event id
-- (a corrected bill) replaces the earlier record of the same tenant and line_item_id.
with

cost_records as (

    select * from {{ ref('stg_raw__cost_records') }}

),

ranked_records as (

    select
        *,
        row_number() over (
            partition by tenant_id, line_item_id
            order by occurred_at desc, cost_record_id desc
        ) as line_item_rank

    from cost_records

),

current_records as (

    select
        *,
        coalesce(
            billing_period_start_date, billing_period_end_date, {{ utc_date('occurred_at') }}
        ) as period_start_date,
        greatest(
            coalesce(
                billing_period_end_date,
                billing_period_start_date,
                {{ utc_date('occurred_at') }}
            ),
            coalesce(
                billing_period_start_date,
                billing_period_end_date,
                {{ utc_date('occurred_at') }}
            )
        ) as period_end_date

    from ranked_records
    where line_item_id is null or line_item_rank = 1

),

spread_records as (

    select
        current_records.tenant_id,
        current_records.asset_id,
        current_records.provider,
        current_records.model,
        current_records.period_start_date + day_offset as usage_date,
        current_records.request_count::numeric
        / (current_records.period_end_date - current_records.period_start_date + 1)
            as billed_request_count,
        current_records.billed_cost_usd
        / (current_records.period_end_date - current_records.period_start_date + 1)
            as billed_cost_usd

    from current_records
    cross join lateral generate_series(
        0, current_records.period_end_date - current_records.period_start_date
    ) as day_offset

),

final as (

    select
        {{ surrogate_key([
            'tenant_id', 'asset_id', 'provider', 'model', "to_char(usage_date, 'YYYY-MM-DD')"
        ]) }} as billed_cost_day_key,
        tenant_id,
        asset_id,
        provider,
        model,
        usage_date,
        count(*) as cost_record_count,
        sum(billed_request_count) as billed_request_count,
        sum(billed_cost_usd) as billed_cost_usd

    from spread_records
    group by tenant_id, asset_id, provider, model, usage_date

)

select * from final
