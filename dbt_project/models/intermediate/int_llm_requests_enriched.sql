-- A view, so the incremental marts' window predicate on occurred_at reaches the hypertable
-- (chunk exclusion) instead of scanning a materialised copy of every request.
with

requests as (

    select * from {{ ref('stg_raw__llm_requests') }}

),

assets as (

    select * from {{ ref('int_registry__asset_versions') }}

),

-- As-of join: the asset version whose validity interval [valid_from, valid_to) contains the
-- request, so a later re-registration never rewrites the attributes of earlier requests.
-- Intervals of one asset do not overlap, so a request matches at most one version; requests
-- of unregistered assets (or sent before the registration) keep null asset attributes.
final as (

    select
        requests.request_id,
        requests.occurred_at,
        requests.tenant_id,
        requests.asset_id,
        assets.asset_version_id,
        assets.version as asset_version,
        assets.name as asset_name,
        assets.asset_kind,
        assets.owner as asset_owner,
        assets.lifecycle_status as asset_lifecycle_status,
        assets.asset_version_id is not null as has_registered_asset,
        requests.operation_name,
        requests.provider,
        requests.request_model,
        requests.response_model,
        requests.status,
        requests.is_success,
        requests.is_error,
        requests.is_rate_limited,
        requests.http_status_code,
        requests.error_type,
        requests.input_tokens,
        requests.output_tokens,
        requests.cache_read_tokens,
        requests.latency_ms,
        requests.time_to_first_token_ms,
        requests.cost_usd,
        requests.user_id,
        requests.ingested_at

    from requests
    left join assets
        on
            requests.tenant_id = assets.tenant_id
            and requests.asset_id = assets.asset_id
            and requests.occurred_at >= assets.valid_from
            and (requests.occurred_at < assets.valid_to or assets.valid_to is null)

)

select * from final
