{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='request_date',
        on_schema_change='fail',
        indexes=[
            {'columns': ['request_day_key'], 'unique': true},
            {'columns': ['request_date']},
            {'columns': ['tenant_id', 'request_date']},
            {'columns': ['request_model', 'request_date']},
            {'columns': ['tenant_id', 'asset_id', 'request_date']},
        ]
    )
}}
{#-
    Computed from raw requests (never from the hourly mart): daily percentiles are exact, not
    averages of hourly ones. unique_key is the bucket so each touched day is replaced whole.
-#}

with

requests as (

    select * from {{ ref('int_llm_requests_enriched') }}
    where {{ incremental_window('occurred_at', 'request_date', 'day') }}

),

aggregated as (

    select
        tenant_id,
        asset_id,
        asset_version_id,
        asset_version,
        provider,
        request_model,
        {{ utc_date('occurred_at') }} as request_date,
        {{ llm_request_metrics() }}

    from requests
    group by
        tenant_id,
        asset_id,
        asset_version_id,
        asset_version,
        provider,
        request_model,
        {{ utc_date('occurred_at') }}

),

final as (

    select
        {{ surrogate_key([
            'tenant_id',
            'asset_id',
            'asset_version_id',
            'provider',
            'request_model',
            "to_char(request_date, 'YYYY-MM-DD')",
        ]) }} as request_day_key,
        tenant_id,
        asset_id,
        asset_version_id,
        asset_version,
        provider,
        request_model,
        request_date,
        {{ llm_request_columns() }}

    from aggregated

)

select * from final
