{{
    config(
        indexes=[
            {'columns': ['llm_cost_day_key'], 'unique': true},
            {'columns': ['tenant_id', 'usage_date']},
            {'columns': ['model', 'usage_date']},
        ]
    )
}}

with

requests_daily as (

    select * from {{ ref('fct_llm_requests_daily') }}

),

model_prices as (

    select * from {{ ref('model_prices') }}

),

billed_costs as (

    select * from {{ ref('int_cost_records_spread_daily') }}

),

-- Usage comes from the daily request mart (token sums are additive over its asset versions),
-- which also keeps history past the raw telemetry retention.
usage as (

    select
        tenant_id,
        asset_id,
        provider,
        request_model as model,
        request_date as usage_date,
        sum(request_count)::bigint as request_count,
        sum(success_count)::bigint as success_count,
        sum(input_tokens)::bigint as input_tokens,
        sum(output_tokens)::bigint as output_tokens,
        sum(cache_read_tokens)::bigint as cache_read_tokens,
        sum(cost_usd) as reported_cost_usd

    from requests_daily
    group by tenant_id, asset_id, provider, request_model, request_date

),

-- List-price estimate: input tokens include the cached ones (OpenTelemetry GenAI semantics),
-- so uncached input is input - cache_read; a model without a cache price pays the input price
-- for cached tokens. No list price for the provider x model: estimated_cost_usd is null.
estimated as (

    select
        usage.*,
        model_prices.model is not null as has_list_price,
        round(
            (
                greatest(usage.input_tokens - usage.cache_read_tokens, 0)
                * model_prices.input_usd_per_mtok
                + usage.cache_read_tokens
                * coalesce(model_prices.cache_read_usd_per_mtok, model_prices.input_usd_per_mtok)
                + usage.output_tokens * model_prices.output_usd_per_mtok
            ) / 1000000,
            9
        ) as estimated_cost_usd

    from usage
    left join model_prices
        on
            usage.provider = model_prices.provider
            and usage.model = model_prices.model

),

usage_cells as (

    select distinct
        tenant_id,
        provider,
        model,
        usage_date

    from usage

),

billing_cells as (

    select
        tenant_id,
        provider,
        model,
        usage_date,
        sum(billed_cost_usd) as billed_cost_usd

    from billed_costs
    group by tenant_id, provider, model, usage_date

),

-- Billing is per tenant x model x day; each asset's share is its part of the estimated cost
-- of that cell, or of its requests when nothing in the cell has an estimate, or an equal part.
cell_shares as (

    select
        estimated.*,
        billing_cells.billed_cost_usd as cell_billed_cost_usd,
        sum(coalesce(estimated.estimated_cost_usd, 0)) over billing_cell
            as cell_estimated_cost_usd,
        sum(estimated.request_count) over billing_cell as cell_request_count,
        count(*) over billing_cell as cell_asset_count

    from estimated
    left join billing_cells
        on
            estimated.tenant_id = billing_cells.tenant_id
            and estimated.provider = billing_cells.provider
            and estimated.model = billing_cells.model
            and estimated.usage_date = billing_cells.usage_date

    window billing_cell as (
        partition by estimated.tenant_id, estimated.provider, estimated.model, estimated.usage_date
    )

),

allocated as (

    select
        tenant_id,
        asset_id,
        provider,
        model,
        usage_date,
        request_count,
        success_count,
        input_tokens,
        output_tokens,
        cache_read_tokens,
        has_list_price,
        estimated_cost_usd,
        reported_cost_usd,
        round(
            cell_billed_cost_usd
            * case
                when cell_estimated_cost_usd > 0
                    then coalesce(estimated_cost_usd, 0) / cell_estimated_cost_usd
                when cell_request_count > 0
                    then request_count::numeric / cell_request_count
                else 1.0 / cell_asset_count
            end,
            9
        ) as billed_cost_usd

    from cell_shares

),

-- A billed cell without any telemetry that day stays on the billing record's own asset (the
-- registry model asset), so billed totals reconcile with raw.cost_records.
unallocated as (

    select
        billed_costs.tenant_id,
        billed_costs.asset_id,
        billed_costs.provider,
        billed_costs.model,
        billed_costs.usage_date,
        0::bigint as request_count,
        0::bigint as success_count,
        0::bigint as input_tokens,
        0::bigint as output_tokens,
        0::bigint as cache_read_tokens,
        model_prices.model is not null as has_list_price,
        case when model_prices.model is not null then 0::numeric end as estimated_cost_usd,
        0::numeric as reported_cost_usd,
        round(billed_costs.billed_cost_usd, 9) as billed_cost_usd

    from billed_costs
    left join model_prices
        on
            billed_costs.provider = model_prices.provider
            and billed_costs.model = model_prices.model
    left join usage_cells
        on
            billed_costs.tenant_id = usage_cells.tenant_id
            and billed_costs.provider = usage_cells.provider
            and billed_costs.model = usage_cells.model
            and billed_costs.usage_date = usage_cells.usage_date
    where usage_cells.usage_date is null

),

combined as (

    select * from allocated
    union all
    select * from unallocated

),

-- cost_usd is the best-known cost: billed once the bill for the day is in, else what the
-- callers reported, else the list-price estimate (callers that report no cost).
costed as (

    select
        *,
        case
            when billed_cost_usd is not null then 'billed'
            when reported_cost_usd > 0 or coalesce(estimated_cost_usd, 0) = 0 then 'reported'
            else 'estimated'
        end as cost_basis

    from combined

),

final as (

    select
        {{ surrogate_key([
            'tenant_id', 'asset_id', 'provider', 'model', "to_char(usage_date, 'YYYY-MM-DD')"
        ]) }} as llm_cost_day_key,
        tenant_id,
        asset_id,
        provider,
        model,
        usage_date,
        date_trunc('month', usage_date::timestamp)::date as usage_month,
        request_count,
        success_count,
        input_tokens,
        output_tokens,
        cache_read_tokens,
        has_list_price,
        billed_cost_usd is not null as has_billing_record,
        estimated_cost_usd,
        reported_cost_usd,
        billed_cost_usd,
        reported_cost_usd - estimated_cost_usd as reported_minus_estimated_cost_usd,
        billed_cost_usd - estimated_cost_usd as billed_minus_estimated_cost_usd,
        billed_cost_usd - reported_cost_usd as billed_minus_reported_cost_usd,
        cost_basis,
        case cost_basis
            when 'billed' then billed_cost_usd
            when 'reported' then reported_cost_usd
            else estimated_cost_usd
        end as cost_usd,
        sum(
            case cost_basis
                when 'billed' then billed_cost_usd
                when 'reported' then reported_cost_usd
                else estimated_cost_usd
            end
        ) over (
            partition by
                tenant_id, asset_id, provider, model, date_trunc('month', usage_date::timestamp)
            order by usage_date
            rows between unbounded preceding and current row
        ) as month_to_date_cost_usd

    from costed

)

select * from final
