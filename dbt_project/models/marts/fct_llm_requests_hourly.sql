{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='request_hour_at',
        on_schema_change='fail',
        indexes=[
            {'columns': ['request_hour_key'], 'unique': true},
            {'columns': ['request_hour_at']},
            {'columns': ['request_model', 'request_hour_at']},
            {'columns': ['tenant_id', 'request_hour_at']},
            {'columns': ['tenant_id', 'asset_id', 'request_hour_at']},
        ]
    )
}}
{#-
    unique_key is the bucket, not the row key: delete+insert then replaces every hour the window
    touches as a whole, so a group that no longer exists in a rebuilt hour cannot linger.
-#}

with

requests as (

    select * from {{ ref('int_llm_requests_enriched') }}
    where {{ incremental_window('occurred_at', 'request_hour_at', 'hour') }}

),

aggregated as (

    select
        tenant_id,
        asset_id,
        asset_version_id,
        asset_version,
        provider,
        request_model,
        {{ utc_hour('occurred_at') }} as request_hour_at,
        {{ llm_request_metrics() }}

    from requests
    group by
        tenant_id,
        asset_id,
        asset_version_id,
        asset_version,
        provider,
        request_model,
        {{ utc_hour('occurred_at') }}

),

final as (

    select
        {{ surrogate_key([
            'tenant_id',
            'asset_id',
            'asset_version_id',
            'provider',
            'request_model',
            utc_text('request_hour_at'),
        ]) }} as request_hour_key,
        tenant_id,
        asset_id,
        asset_version_id,
        asset_version,
        provider,
        request_model,
        request_hour_at,
        {{ utc_date('request_hour_at') }} as request_date,
        {{ llm_request_columns() }}

    from aggregated

)

select * from final
