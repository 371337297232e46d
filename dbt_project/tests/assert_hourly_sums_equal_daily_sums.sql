{{ config(meta={'dagster': {'ref': {'name': 'fct_llm_requests_daily'}}}) }}

-- Every additive measure of the hourly mart, summed over a UTC day, equals the daily mart's
-- (both are built from raw requests independently, with their own incremental windows).
with

hourly as (

    select * from {{ ref('fct_llm_requests_hourly') }}

),

daily as (

    select * from {{ ref('fct_llm_requests_daily') }}

),

hourly_by_day as (

    select
        tenant_id,
        asset_id,
        asset_version_id,
        provider,
        request_model,
        request_date,
        sum(request_count) as request_count,
        sum(success_count) as success_count,
        sum(error_count) as error_count,
        sum(rate_limited_count) as rate_limited_count,
        sum(input_tokens) as input_tokens,
        sum(output_tokens) as output_tokens,
        sum(cache_read_tokens) as cache_read_tokens,
        sum(generation_output_tokens) as generation_output_tokens,
        sum(generation_time_ms) as generation_time_ms,
        sum(cost_usd) as cost_usd

    from hourly
    group by tenant_id, asset_id, asset_version_id, provider, request_model, request_date

),

daily_sums as (

    select
        tenant_id,
        asset_id,
        asset_version_id,
        provider,
        request_model,
        request_date,
        sum(request_count) as request_count,
        sum(success_count) as success_count,
        sum(error_count) as error_count,
        sum(rate_limited_count) as rate_limited_count,
        sum(input_tokens) as input_tokens,
        sum(output_tokens) as output_tokens,
        sum(cache_read_tokens) as cache_read_tokens,
        sum(generation_output_tokens) as generation_output_tokens,
        sum(generation_time_ms) as generation_time_ms,
        sum(cost_usd) as cost_usd

    from daily
    group by tenant_id, asset_id, asset_version_id, provider, request_model, request_date

),

only_in_hourly as (

    select * from hourly_by_day
    except
    select * from daily_sums

),

only_in_daily as (

    select * from daily_sums
    except
    select * from hourly_by_day

),

final as (

    select
        'only in hourly' as mismatch,
        only_in_hourly.*
    from only_in_hourly

    union all

    select
        'only in daily' as mismatch,
        only_in_daily.*
    from only_in_daily

)

select * from final  -- noqa: AM04
