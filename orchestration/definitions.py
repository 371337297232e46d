"""The one entry point of the code location: assets, checks, resources, jobs and schedules."""

import dagster as dg

from assets.ingestion import RAW_FRESHNESS_CHECKS, kafka_ingestion, retention_runs
from orchestration import env
from orchestration.jobs import ingestion_job, retention_job
from orchestration.resources import HubResource
from orchestration.schedules import ingestion_schedule, retention_schedule

defs = dg.Definitions(
    assets=[kafka_ingestion, retention_runs],
    asset_checks=RAW_FRESHNESS_CHECKS,
    jobs=[ingestion_job, retention_job],
    schedules=[ingestion_schedule, retention_schedule],
    resources={
        "hub": HubResource(
            database_url=env.database_url(),
            kafka_bootstrap=env.kafka_bootstrap(),
            topic_prefix=env.env_or_default("LLMHUB_TOPIC_PREFIX", ""),
            consumer_group=env.env_or_default("LLMHUB_CONSUMER_GROUP", "llmhub-ingest"),
        )
    },
)
