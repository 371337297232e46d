"""The one entry point of the code location: assets, checks, resources, jobs and schedules."""

import dagster as dg

from assets.alerts import alert_deliveries, alert_outbox, notifications_delivered
from assets.incidents import incident_integrity, incidents
from assets.ingestion import RAW_FRESHNESS_CHECKS, kafka_ingestion, retention_runs
from assets.ml_models import anomaly_detector, request_rate_forecaster
from assets.publish import anomalies, budget_projections, forecasts
from assets.quality import mart_quality_checks, raw_quality_checks
from assets.resources import HubResource, env
from assets.resources.dbt import dbt_cli_resource, dbt_project, prepare
from assets.resources.mlflow import MlflowResource
from assets.transform import dbt_model_assets
from llmhub.config import DEFAULT_CONSUMER_GROUP
from orchestration.jobs import (
    alert_delivery_job,
    alerts_job,
    budget_projections_job,
    incidents_job,
    ingestion_job,
    ml_scoring_job,
    ml_training_job,
    retention_job,
    slo_burn_rate_job,
    transform_daily_job,
    transform_hourly_job,
)
from orchestration.schedules import (
    alert_delivery_schedule,
    budget_projections_schedule,
    incidents_schedule,
    ingestion_schedule,
    ml_scoring_schedule,
    ml_training_schedule,
    retention_schedule,
    slo_burn_rate_schedule,
    transform_daily_schedule,
    transform_hourly_schedule,
)
from orchestration.sensors import alerts_sensor

# The one place the dbt project is parsed (when its manifest is missing or stale, or always under
# `dagster dev`): the dbt assets are built from the manifest.
dbt_hourly_models, dbt_daily_models = dbt_model_assets(prepare(dbt_project))

defs = dg.Definitions(
    assets=[
        kafka_ingestion,
        retention_runs,
        dbt_hourly_models,
        dbt_daily_models,
        request_rate_forecaster,
        anomaly_detector,
        anomalies,
        forecasts,
        budget_projections,
        alert_outbox,
        alert_deliveries,
        incidents,
    ],
    asset_checks=[
        *RAW_FRESHNESS_CHECKS,
        raw_quality_checks,
        mart_quality_checks,
        notifications_delivered,
        incident_integrity,
    ],
    jobs=[
        ingestion_job,
        retention_job,
        transform_hourly_job,
        transform_daily_job,
        ml_training_job,
        ml_scoring_job,
        budget_projections_job,
        alerts_job,
        alert_delivery_job,
        slo_burn_rate_job,
        incidents_job,
    ],
    schedules=[
        ingestion_schedule,
        retention_schedule,
        transform_hourly_schedule,
        transform_daily_schedule,
        ml_training_schedule,
        ml_scoring_schedule,
        budget_projections_schedule,
        alert_delivery_schedule,
        slo_burn_rate_schedule,
        incidents_schedule,
    ],
    sensors=[alerts_sensor],
    resources={
        "hub": HubResource(
            database_url=env.database_url(),
            kafka_bootstrap=env.kafka_bootstrap(),
            topic_prefix=env.env_or_default("LLMHUB_TOPIC_PREFIX", ""),
            consumer_group=env.env_or_default("LLMHUB_CONSUMER_GROUP", DEFAULT_CONSUMER_GROUP),
        ),
        # The connection comes from "hub" (see assets/resources/dbt.py).
        "dbt": dbt_cli_resource(dbt_project),
        "mlflow_tracking": MlflowResource(tracking_uri=env.mlflow_tracking_uri()),
    },
)
