"""The code location wires the dbt assets, the quality checks, their jobs and schedules."""

import dagster as dg
import pytest

from llmhub.contract.topics import RAW_TABLES
from orchestration.definitions import defs

HOURLY_KEYS = {
    dg.AssetKey(path)
    for path in (
        ["staging", "stg_raw__llm_requests"],
        ["staging", "stg_raw__registry_events"],
        ["intermediate", "int_registry__asset_versions"],
        ["marts", "dim_assets"],
        ["intermediate", "int_llm_requests_enriched"],
        ["marts", "fct_llm_requests_hourly"],
        ["marts", "fct_llm_requests_daily"],
    )
}
DAILY_MARTS = {
    dg.AssetKey(["marts", name])
    for name in (
        "dim_models",
        "fct_llm_cost_daily",
        "fct_security_alerts_daily",
        "fct_policy_violations_daily",
    )
}
REQUESTS = dg.AssetKey(["raw", "llm_requests"])
HOURLY = dg.AssetKey(["marts", "fct_llm_requests_hourly"])


def _job_keys(job: str) -> tuple[set[dg.AssetKey], set[dg.AssetCheckKey]]:
    job_def = defs.resolve_job_def(job)
    graph = job_def.asset_layer.asset_graph
    return set(job_def.asset_layer.selected_asset_keys), set(graph.asset_check_keys)


def test_dbt_assets_are_in_the_transform_group_with_their_kinds() -> None:
    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    transform = {key for key, spec in specs.items() if spec.group_name == "transform"}

    assert HOURLY_KEYS | DAILY_MARTS | {dg.AssetKey(["seeds", "model_prices"])} <= transform
    assert all({"dbt", "timescaledb"} == set(specs[key].kinds) for key in transform)


def test_staging_reads_the_ingested_raw_tables() -> None:
    graph = defs.resolve_asset_graph()

    for table in RAW_TABLES:
        staging = graph.get(dg.AssetKey(["staging", f"stg_raw__{table}"]))
        assert staging.parent_keys == {dg.AssetKey(["raw", table])}
        assert graph.get(dg.AssetKey(["raw", table])).is_materializable


def test_the_hourly_job_builds_the_request_marts_after_the_raw_checks() -> None:
    assets, checks = _job_keys("transform_hourly_job")

    assert assets == HOURLY_KEYS
    assert {
        dg.AssetCheckKey(REQUESTS, "valid_values"),
        dg.AssetCheckKey(REQUESTS, "null_rates"),
        dg.AssetCheckKey(HOURLY, "valid_values"),
        dg.AssetCheckKey(HOURLY, "unique_fct_llm_requests_hourly_request_hour_key"),
    } <= checks
    # The ingestion checks belong to the ingestion run, not to this one.
    assert dg.AssetCheckKey(REQUESTS, "dead_letter_rate") not in checks
    structure = defs.resolve_job_def("transform_hourly_job").graph.dependency_structure
    upstream = {
        output.node_name
        for outputs in structure.input_to_upstream_outputs_for_node("dbt_hourly_models").values()
        for output in outputs
    }
    assert upstream == {"raw_quality_checks"}


def test_the_daily_job_builds_everything_else() -> None:
    assets, checks = _job_keys("transform_daily_job")

    assert DAILY_MARTS <= assets
    assert not assets & HOURLY_KEYS
    assert dg.AssetCheckKey(dg.AssetKey(["raw", "cost_records"]), "valid_values") in checks
    assert dg.AssetCheckKey(REQUESTS, "valid_values") not in checks


def test_every_transform_asset_is_built_by_exactly_one_job() -> None:
    hourly, _ = _job_keys("transform_hourly_job")
    daily, _ = _job_keys("transform_daily_job")
    transform = {
        spec.key for spec in defs.resolve_all_asset_specs() if spec.group_name == "transform"
    }

    assert hourly | daily == transform
    assert not hourly & daily


def test_ingestion_runs_no_great_expectations_suite() -> None:
    # A GX suite costs seconds; the ingestion job runs every minute.
    _, checks = _job_keys("ingestion_job")

    assert {check.name for check in checks} == {
        "dead_letter_rate",
        "consumer_lag",
        "raw_table_fresh",
    }


@pytest.mark.parametrize(
    ("schedule", "job", "cron"),
    [
        ("transform_hourly_schedule", "transform_hourly_job", "10 * * * *"),
        ("transform_daily_schedule", "transform_daily_job", "30 1 * * *"),
    ],
)
def test_transform_schedules_run_their_jobs_in_utc(schedule: str, job: str, cron: str) -> None:
    definition = defs.resolve_schedule_def(schedule)

    assert (definition.job_name, definition.cron_schedule) == (job, cron)
    assert definition.execution_timezone == "UTC"
    assert definition.default_status == dg.DefaultScheduleStatus.RUNNING


def test_the_ml_inputs_are_guarded_by_blocking_checks() -> None:
    graph = defs.resolve_asset_graph()

    assert graph.get_check_spec(dg.AssetCheckKey(HOURLY, "valid_values")).blocking
    assert graph.get_check_spec(dg.AssetCheckKey(REQUESTS, "valid_values")).blocking
    assert not graph.get_check_spec(dg.AssetCheckKey(HOURLY, "fresh")).blocking


def test_the_dbt_resource_starts_this_environments_dbt() -> None:
    from dagster_dbt import DbtCliResource

    resource = defs.resources["dbt"]

    assert isinstance(resource, DbtCliResource)
    assert resource.dbt_executable.endswith("dbt")
    assert resource.profiles_dir == resource.project_dir
