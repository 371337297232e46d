"""Schedules of the hub."""

import dagster as dg

from orchestration.jobs import ingestion_job, retention_job

# Every minute: Kafka keeps the backlog, so a skipped tick only delays data. Overlapping runs are
# safe (partition locks), but the run queue's concurrency limit keeps them from piling up.
ingestion_schedule = dg.ScheduleDefinition(
    name="ingestion_schedule",
    cron_schedule="* * * * *",
    job=ingestion_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
retention_schedule = dg.ScheduleDefinition(
    name="retention_schedule",
    cron_schedule="17 3 * * *",
    job=retention_job,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
