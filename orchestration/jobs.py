"""Jobs select assets by key or group, never by importing asset functions."""

import dagster as dg

from assets import groups

# The request marts (the ML inputs), the asset dimension, and every transform asset upstream of
# them: what the dbt_hourly_models definition builds (dbt selection +fct_llm_requests_hourly
# +fct_llm_requests_daily +dim_assets).
REQUEST_MARTS = dg.AssetSelection.assets(
    ["marts", "fct_llm_requests_hourly"],
    ["marts", "fct_llm_requests_daily"],
    ["marts", "dim_assets"],
)
HOURLY_TRANSFORM = REQUEST_MARTS.upstream() & dg.AssetSelection.groups(groups.TRANSFORM)
DAILY_TRANSFORM = dg.AssetSelection.groups(groups.TRANSFORM) - HOURLY_TRANSFORM


def _checks(*keys: tuple[str, str]) -> dg.AssetSelection:
    return dg.AssetSelection.checks(
        *(dg.AssetCheckKey(dg.AssetKey(["raw", table]), name) for table, name in keys)
    )


# Great Expectations checks on raw tables (assets/quality): run with the transform that reads the
# table, not with every minute's ingestion run (a GX suite costs seconds).
RAW_HOURLY_QUALITY = _checks(("llm_requests", "valid_values"), ("llm_requests", "null_rates"))
RAW_DAILY_QUALITY = _checks(
    ("security_alerts", "valid_values"),
    ("cost_records", "valid_values"),
    ("policy_violations", "valid_values"),
)

ingestion_job = dg.define_asset_job(
    "ingestion_job",
    selection=dg.AssetSelection.groups(groups.INGESTION)
    - dg.AssetSelection.assets(["raw", "retention_runs"])
    - RAW_HOURLY_QUALITY
    - RAW_DAILY_QUALITY,
    description="One bounded Kafka micro-batch into the raw hypertables, with its checks.",
    # Matched by the run queue's tag_concurrency_limits in infra/local/dagster.yaml.
    tags={"llmhub/queue": "ingestion"},
)
retention_job = dg.define_asset_job(
    "retention_job",
    selection=dg.AssetSelection.assets(["raw", "retention_runs"]),
    description="Drop raw chunks past each table's retention window.",
)
transform_hourly_job = dg.define_asset_job(
    "transform_hourly_job",
    selection=HOURLY_TRANSFORM | RAW_HOURLY_QUALITY,
    description="Validate the recent raw requests (blocking), then dbt build the request marts "
    "and everything upstream of them, with their dbt tests and Great Expectations checks.",
)
transform_daily_job = dg.define_asset_job(
    "transform_daily_job",
    selection=DAILY_TRANSFORM | RAW_DAILY_QUALITY,
    description="dbt build the daily cost, security and compliance marts, the model dimension "
    "and the price seed, with their dbt tests and Great Expectations checks.",
)

ml_training_job = dg.define_asset_job(
    "ml_training_job",
    selection=dg.AssetSelection.groups(groups.ML_MODELS),
    description="Evaluate the forecaster and the anomaly detector, register them in MLflow and "
    "move the `champion` alias when they beat the baseline and the champion.",
)
ml_scoring_job = dg.define_asset_job(
    "ml_scoring_job",
    selection=dg.AssetSelection.assets(["analytics", "anomalies"], ["analytics", "forecasts"]),
    description="Score the newest hours for anomalies and forecast the next 48 h with the "
    "champion models.",
)
budget_projections_job = dg.define_asset_job(
    "budget_projections_job",
    selection=dg.AssetSelection.assets(["analytics", "budget_projections"]),
    description="Project month-end cost per tenant and budgeted application.",
)
alerts_job = dg.define_asset_job(
    "alerts_job",
    selection=dg.AssetSelection.groups(groups.ALERTS),
    description="Evaluate the alert sources into the outbox and send what is due.",
)
alert_delivery_job = dg.define_asset_job(
    "alert_delivery_job",
    selection=dg.AssetSelection.assets(["alerting", "delivery_attempts"]),
    description="Send due notifications (retries, group waits) from the outbox.",
)
slo_burn_rate_job = dg.define_asset_job(
    "slo_burn_rate_job",
    selection=dg.AssetSelection.assets(["marts", "fct_slo_burn_rate_alerts"]),
    description="Rebuild the SLO burn-rate mart (its windows are 5 minutes to 6 hours).",
)
incidents_job = dg.define_asset_job(
    "incidents_job",
    selection=dg.AssetSelection.groups(groups.INCIDENTS),
    description="Correlate the newest anomalies with registry, security and policy events and "
    "the forecasts into incidents (root cause, members, excess cost).",
)
