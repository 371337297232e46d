"""The one entry point of the code location: assets, checks, resources, jobs and schedules."""

import dagster as dg

from assets.ingestion import RAW_FRESHNESS_CHECKS, kafka_ingestion, retention_runs
from assets.quality import mart_quality_checks, raw_quality_checks
from assets.transform import dbt_daily_models, dbt_hourly_models
from orchestration import env
from orchestration.jobs import (
    ingestion_job,
    retention_job,
    transform_daily_job,
    transform_hourly_job,
)
from orchestration.resources import HubResource
from orchestration.resources.dbt import dbt_cli_resource, dbt_project
from orchestration.schedules import (
    ingestion_schedule,
    retention_schedule,
    transform_daily_schedule,
    transform_hourly_schedule,
)

defs = dg.Definitions(
    assets=[kafka_ingestion, retention_runs, dbt_hourly_models, dbt_daily_models],
    asset_checks=[*RAW_FRESHNESS_CHECKS, raw_quality_checks, mart_quality_checks],
    jobs=[ingestion_job, retention_job, transform_hourly_job, transform_daily_job],
    schedules=[
        ingestion_schedule,
        retention_schedule,
        transform_hourly_schedule,
        transform_daily_schedule,
    ],
    resources={
        "hub": HubResource(
            database_url=env.database_url(),
            kafka_bootstrap=env.kafka_bootstrap(),
            topic_prefix=env.env_or_default("LLMHUB_TOPIC_PREFIX", ""),
            consumer_group=env.env_or_default("LLMHUB_CONSUMER_GROUP", "llmhub-ingest"),
        ),
        # The connection comes from "hub" (see orchestration/resources/dbt.py).
        "dbt": dbt_cli_resource(dbt_project),
    },
)
