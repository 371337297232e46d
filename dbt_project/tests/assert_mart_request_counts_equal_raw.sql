{{ config(meta={'dagster': {'ref': {'name': 'fct_llm_requests_daily'}}}) }}

-- Request counts, tokens and reported cost per tenant x asset x provider x model x UTC day
-- equal raw in both request marts: nothing dropped, duplicated or fanned out by the as-of join,
-- and no late event left outside an incremental window. Days before the oldest raw row are
-- skipped (raw retention drops old chunks; the marts keep their history).
with

requests as (

    select * from {{ ref('stg_raw__llm_requests') }}

),

hourly as (

    select * from {{ ref('fct_llm_requests_hourly') }}

),

daily as (

    select * from {{ ref('fct_llm_requests_daily') }}

),

raw_days as (

    select
        tenant_id,
        asset_id,
        provider,
        request_model,
        {{ utc_date('occurred_at') }} as request_date,
        count(*) as request_count,
        coalesce(sum(input_tokens), 0) as input_tokens,
        coalesce(sum(output_tokens), 0) as output_tokens,
        coalesce(sum(cost_usd), 0) as cost_usd

    from requests
    group by tenant_id, asset_id, provider, request_model, {{ utc_date('occurred_at') }}

),

first_raw_day as (

    select min(request_date) as request_date from raw_days

),

mart_days as (

    select
        'hourly' as mart,
        tenant_id,
        asset_id,
        provider,
        request_model,
        request_date,
        sum(request_count) as request_count,
        sum(input_tokens) as input_tokens,
        sum(output_tokens) as output_tokens,
        sum(cost_usd) as cost_usd

    from hourly
    group by tenant_id, asset_id, provider, request_model, request_date

    union all

    select
        'daily' as mart,
        tenant_id,
        asset_id,
        provider,
        request_model,
        request_date,
        sum(request_count) as request_count,
        sum(input_tokens) as input_tokens,
        sum(output_tokens) as output_tokens,
        sum(cost_usd) as cost_usd

    from daily
    group by tenant_id, asset_id, provider, request_model, request_date

),

expected as (

    select
        marts.mart,
        raw_days.*
    from raw_days
    cross join (values ('hourly'), ('daily')) as marts (mart)

),

actual as (

    select mart_days.*
    from mart_days
    inner join first_raw_day on mart_days.request_date >= first_raw_day.request_date

),

missing_in_marts as (

    select * from expected
    except
    select * from actual

),

not_in_raw as (

    select * from actual
    except
    select * from expected

),

final as (

    select
        'missing or different in mart' as mismatch,
        missing_in_marts.*
    from missing_in_marts

    union all

    select
        'not in raw' as mismatch,
        not_in_raw.*
    from not_in_raw

)

select * from final  -- noqa: AM04
