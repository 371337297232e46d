with

source as (

    select * from {{ source('raw', 'llm_requests') }}

),

final as (

    select
        event_id as request_id,
        occurred_at,
        tenant_id,
        asset_id,
        event_type,
        source_module,
        severity,
        schema_version,
        operation_name,
        provider,
        request_model,
        response_model,
        response_id,
        status,
        status = 'ok' as is_success,
        status = 'error' as is_error,
        status = 'rate_limited' as is_rate_limited,
        http_status_code,
        error_type,
        finish_reasons,
        input_tokens,
        output_tokens,
        cache_read_tokens,
        latency_ms,
        time_to_first_token_ms,
        cost_usd,
        user_id,
        attributes,
        kafka_partition,
        kafka_offset,
        ingested_at

    from source

)

select * from final
