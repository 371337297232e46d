"""The code location loads, and wires the ingestion assets, checks, jobs and schedules."""

from __future__ import annotations

import dagster as dg
import pytest

from llmhub.contract.topics import TOPICS
from orchestration.definitions import defs

RAW_KEYS = {dg.AssetKey(["raw", spec.table]) for spec in TOPICS}
DEAD_LETTER = dg.AssetKey(["raw", "dead_letter"])
RETENTION = dg.AssetKey(["raw", "retention_runs"])


def test_definitions_are_loadable() -> None:
    dg.Definitions.validate_loadable(defs)


def test_raw_assets_are_present_in_the_ingestion_group() -> None:
    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    assert RAW_KEYS | {DEAD_LETTER, RETENTION} <= set(specs)
    for key in RAW_KEYS | {DEAD_LETTER}:
        assert specs[key].group_name == "ingestion"
        assert {"kafka", "timescaledb"} <= set(specs[key].kinds)
        assert specs[key].description


def test_jobs_select_ingestion_and_retention_separately() -> None:
    ingestion = defs.resolve_job_def("ingestion_job").asset_layer.selected_asset_keys
    retention = defs.resolve_job_def("retention_job").asset_layer.selected_asset_keys
    assert RAW_KEYS | {DEAD_LETTER} <= set(ingestion)
    assert RETENTION not in ingestion
    assert set(retention) == {RETENTION}


@pytest.mark.parametrize(
    ("schedule", "job", "cron"),
    [
        ("ingestion_schedule", "ingestion_job", "* * * * *"),
        ("retention_schedule", "retention_job", "17 3 * * *"),
    ],
)
def test_schedules_run_their_jobs(schedule: str, job: str, cron: str) -> None:
    definition = defs.resolve_schedule_def(schedule)
    assert (definition.job_name, definition.cron_schedule) == (job, cron)
    assert definition.default_status == dg.DefaultScheduleStatus.RUNNING


@pytest.mark.parametrize("key", sorted(RAW_KEYS, key=str), ids=lambda key: key.path[-1])
def test_each_raw_table_has_its_checks(key: dg.AssetKey) -> None:
    graph = defs.resolve_asset_graph()
    checks = {ck.name: ck for ck in graph.asset_check_keys if ck.asset_key == key}
    assert {"dead_letter_rate", "consumer_lag", "raw_table_fresh"} <= set(checks)
    assert graph.get_check_spec(checks["dead_letter_rate"]).blocking
    assert not graph.get_check_spec(checks["consumer_lag"]).blocking


def test_incidents_asset_job_and_schedule_are_wired() -> None:
    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    incidents = dg.AssetKey(["analytics", "incidents"])
    assert specs[incidents].group_name == "incidents"
    assert dg.AssetKey(["analytics", "anomalies"]) in {
        dep.asset_key for dep in specs[incidents].deps
    }
    job = defs.resolve_job_def("incidents_job").asset_layer.selected_asset_keys
    assert {incidents, dg.AssetKey(["analytics", "incident_members"])} <= set(job)
    schedule = defs.resolve_schedule_def("incidents_schedule")
    assert schedule.job_name == "incidents_job"
