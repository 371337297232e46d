"""The transform schedules skip a tick while the previous build of their job is unfinished."""

from collections.abc import Iterator

import dagster as dg
import pytest

from orchestration.schedules import (
    ml_scoring_schedule,
    transform_daily_schedule,
    transform_hourly_schedule,
)


@pytest.fixture(scope="module")
def _instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def instance(_instance: dg.DagsterInstance) -> dg.DagsterInstance:
    _instance.wipe()
    return _instance


def _add_run(instance: dg.DagsterInstance, job_name: str, status: dg.DagsterRunStatus) -> str:
    return instance.add_run(dg.DagsterRun(job_name=job_name, status=status)).run_id


@pytest.mark.parametrize(
    "schedule", [transform_hourly_schedule, transform_daily_schedule], ids=lambda s: s.name
)
def test_a_tick_requests_a_run_when_nothing_is_running(
    instance: dg.DagsterInstance, schedule: dg.ScheduleDefinition
) -> None:
    result = schedule(dg.build_schedule_context(instance=instance))

    assert isinstance(result, dg.RunRequest)


@pytest.mark.parametrize("status", [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED])
def test_a_tick_is_skipped_while_the_previous_build_is_unfinished(
    instance: dg.DagsterInstance, status: dg.DagsterRunStatus
) -> None:
    # Two overlapping delete+insert builds of one bucket could both insert it.
    run_id = _add_run(instance, "transform_hourly_job", status)

    result = transform_hourly_schedule(dg.build_schedule_context(instance=instance))

    assert isinstance(result, dg.SkipReason)
    assert run_id in (result.skip_message or "")


def test_finished_runs_and_other_jobs_do_not_hold_a_tick(instance: dg.DagsterInstance) -> None:
    _add_run(instance, "transform_hourly_job", dg.DagsterRunStatus.SUCCESS)
    _add_run(instance, "transform_hourly_job", dg.DagsterRunStatus.FAILURE)
    _add_run(instance, "transform_daily_job", dg.DagsterRunStatus.STARTED)

    result = transform_hourly_schedule(dg.build_schedule_context(instance=instance))

    assert isinstance(result, dg.RunRequest)


def test_ml_scoring_waits_for_both_models_then_for_unfinished_runs(
    instance: dg.DagsterInstance,
) -> None:
    context = dg.build_schedule_context(instance=instance)
    skipped = ml_scoring_schedule(context)
    assert isinstance(skipped, dg.SkipReason)
    assert "ml/anomaly_detector" in (skipped.skip_message or "")

    instance.report_runless_asset_event(dg.AssetMaterialization(["ml", "anomaly_detector"]))
    still = ml_scoring_schedule(dg.build_schedule_context(instance=instance))
    assert isinstance(still, dg.SkipReason)
    assert "ml/request_rate_forecaster" in (still.skip_message or "")

    instance.report_runless_asset_event(dg.AssetMaterialization(["ml", "request_rate_forecaster"]))
    assert isinstance(
        ml_scoring_schedule(dg.build_schedule_context(instance=instance)), dg.RunRequest
    )

    _add_run(instance, "ml_scoring_job", dg.DagsterRunStatus.STARTED)
    assert isinstance(
        ml_scoring_schedule(dg.build_schedule_context(instance=instance)), dg.SkipReason
    )
