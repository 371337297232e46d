with

source as (

    select * from {{ source('raw', 'cost_records') }}

),

final as (

    select
        event_id as cost_record_id,
        occurred_at,
        tenant_id,
        asset_id,
        event_type,
        source_module,
        severity,
        schema_version,
        provider,
        model,
        input_tokens,
        output_tokens,
        cache_read_tokens,
        request_count,
        cost_usd as billed_cost_usd,
        currency,
        billing_period_start as billing_period_start_date,
        billing_period_end as billing_period_end_date,
        invoice_id,
        line_item_id,
        attributes,
        kafka_partition,
        kafka_offset,
        ingested_at

    from source

)

select * from final
