{{ config(meta={'dagster': {'ref': {'name': 'fct_llm_cost_daily'}}}) }}

-- Billing allocated to assets adds back up to what was billed per tenant x provider x model x
-- day (allocations are rounded to 1e-9 USD each), and nothing billed is lost.
with

cost_daily as (

    select * from {{ ref('fct_llm_cost_daily') }}

),

billed_costs as (

    select * from {{ ref('int_cost_records_spread_daily') }}

),

allocated as (

    select
        tenant_id,
        provider,
        model,
        usage_date,
        sum(billed_cost_usd) as billed_cost_usd,
        count(*) as asset_count

    from cost_daily
    where billed_cost_usd is not null
    group by tenant_id, provider, model, usage_date

),

billed as (

    select
        tenant_id,
        provider,
        model,
        usage_date,
        sum(billed_cost_usd) as billed_cost_usd

    from billed_costs
    group by tenant_id, provider, model, usage_date

),

final as (

    select
        coalesce(billed.tenant_id, allocated.tenant_id) as tenant_id,
        coalesce(billed.provider, allocated.provider) as provider,
        coalesce(billed.model, allocated.model) as model,
        coalesce(billed.usage_date, allocated.usage_date) as usage_date,
        billed.billed_cost_usd,
        allocated.billed_cost_usd as allocated_cost_usd

    from billed
    full outer join allocated
        on
            billed.tenant_id = allocated.tenant_id
            and billed.provider = allocated.provider
            and billed.model = allocated.model
            and billed.usage_date = allocated.usage_date
    where
        billed.billed_cost_usd is null
        or allocated.billed_cost_usd is null
        or abs(billed.billed_cost_usd - allocated.billed_cost_usd)
        > 0.000000001 * allocated.asset_count

)

select * from final
