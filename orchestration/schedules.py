"""Schedules of the hub."""

from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )

from orchestration.jobs import (
    alert_delivery_job,
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

UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def run_unless_unfinished(
    context: dg.ScheduleEvaluationContext, job_name: str
) -> dg.RunRequest | dg.SkipReason:
    """A run of ``job_name``, unless one is still queued or running.

    Two concurrent builds of an incremental mart could both delete and re-insert the same
    bucket (delete+insert in READ COMMITTED does not see the other's new rows) and duplicate it;
    the next tick picks up whatever a skipped one would have.
    """
    unfinished = context.instance.get_run_records(
        filters=dg.RunsFilter(job_name=job_name, statuses=UNFINISHED), limit=1
    )
    if unfinished:
        return dg.SkipReason(f"{job_name} run {unfinished[0].dagster_run.run_id} is unfinished")
    return dg.RunRequest()


def exclusive_schedule(
    name: str,
    cron_schedule: str,
    job: "UnresolvedAssetJobDefinition",
    description: str,
    default_status: dg.DefaultScheduleStatus = dg.DefaultScheduleStatus.RUNNING,
) -> dg.ScheduleDefinition:
    """A UTC schedule of ``job`` that skips its tick while a previous run is unfinished."""

    @dg.schedule(
        name=name,
        cron_schedule=cron_schedule,
        job=job,
        execution_timezone="UTC",
        default_status=default_status,
        description=description,
    )
    def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        return run_unless_unfinished(context, job.name)

    return _schedule


transform_hourly_schedule = exclusive_schedule(
    "transform_hourly_schedule",
    "10 * * * *",
    transform_hourly_job,
    "Minute 10 of every hour: the previous hour has closed and the per-minute ingestion has "
    "written it; the dbt lookback (6 h) reprocesses the hours before it for late events.",
)
transform_daily_schedule = exclusive_schedule(
    "transform_daily_schedule",
    "30 1 * * *",
    transform_daily_job,
    "01:30 UTC: after the 01:10 hourly build has closed yesterday in fct_llm_requests_daily.",
)


# Weekly training: Mondays 03:00 UTC, after the nightly marts. The run fits the detector fleet
# and backtests the forecaster; each `champion` alias moves only past its gate.
ml_training_schedule = dg.ScheduleDefinition(
    name="ml_training_schedule",
    cron_schedule="0 3 * * 1",
    job=ml_training_job,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

#: Scoring needs a trained model of each kind; until the first training, its ticks skip.
ML_MODEL_KEYS = (
    dg.AssetKey(["ml", "anomaly_detector"]),
    dg.AssetKey(["ml", "request_rate_forecaster"]),
)


@dg.schedule(
    name="ml_scoring_schedule",
    cron_schedule="40 * * * *",
    job=ml_scoring_job,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Minute 40: after the minute-10 hourly dbt build has refreshed "
    "fct_llm_requests_hourly. Skips until both models have been trained once (run "
    "ml_training_job in Dagit to start at once) and while a scoring run is unfinished.",
)
def ml_scoring_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    untrained = [
        key.to_user_string()
        for key in ML_MODEL_KEYS
        if context.instance.get_latest_materialization_event(key) is None
    ]
    if untrained:
        return dg.SkipReason(f"not trained yet: {', '.join(untrained)}; run ml_training_job")
    return run_unless_unfinished(context, ml_scoring_job.name)


budget_projections_schedule = dg.ScheduleDefinition(
    name="budget_projections_schedule",
    cron_schedule="15 2 * * *",  # after the 01:30 daily build of fct_llm_cost_daily
    job=budget_projections_job,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

# Retries and group waits fall due between source materialisations; the alerts sensor covers
# new alerts within a minute, this picks up what became due since.
alert_delivery_schedule = dg.ScheduleDefinition(
    name="alert_delivery_schedule",
    cron_schedule="*/2 * * * *",
    job=alert_delivery_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
# Multiwindow burn rates need fresh short windows (5 and 30 minutes).
slo_burn_rate_schedule = dg.ScheduleDefinition(
    name="slo_burn_rate_schedule",
    cron_schedule="*/5 * * * *",
    job=slo_burn_rate_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
incidents_schedule = exclusive_schedule(
    "incidents_schedule",
    "55 * * * *",
    incidents_job,
    "Minute 55: after the minute-40 scoring run has published the hour's anomalies and "
    "forecasts; the 48 h lookback recomputes recent incidents with late data.",
)
