with

source as (

    select * from {{ source('alerting', 'slo_objectives') }}

),

final as (

    select
        slo_id,
        tenant_id,
        asset_id,
        kind as slo_kind,
        objective,
        latency_percentile,
        latency_threshold_ms,
        window_days,
        created_at

    from source

)

select * from final
