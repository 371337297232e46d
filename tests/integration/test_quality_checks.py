"""The Great Expectations checks against real raw tables and marts: good data passes, bad data
fails its check, and a failed blocking check keeps downstream assets from running.

Database ``llmhub_test_quality`` is created for this module (the raw rows of
``test_dbt_assets``, marts built by one ``dbt build``) and dropped afterwards. Each test that
damages data repairs it before it ends.
"""

import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import psycopg
import pytest

from assets.quality import mart_quality_checks, raw_quality_checks
from assets.resources.dbt import DBT_EXECUTABLE, dbt_cli_env, dbt_project
from integration.conftest import TEST_DATABASE
from integration.test_dbt_assets import (
    dbt_hourly_models,
    fresh_database,
    hub_resource,
    insert_request,
    resources,
    seed_raw,
)
from llmhub.config import Settings

pytestmark = pytest.mark.integration

DATABASE = f"{TEST_DATABASE}_quality"
HOURLY = dg.AssetKey(["marts", "fct_llm_requests_hourly"])
RAW_REQUESTS = dg.AssetKey(["raw", "llm_requests"])


@dg.asset(deps=[HOURLY])
def hourly_features() -> None:
    """Stands in for the ML assets that will read the hourly request mart."""


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with fresh_database(DATABASE) as settings:
        seed_raw(settings)
        # The plain CLI (models and seed, no tests): what the checks read, without the seconds
        # dagster-dbt spends on its version probe and adapter; test_dbt_assets covers that path.
        subprocess.run(
            [
                DBT_EXECUTABLE,
                "build",
                "--quiet",
                "--exclude",
                "resource_type:test",
                "resource_type:unit_test",
                "--target-path",
                str(tmp_path_factory.mktemp("dbt")),
            ],
            cwd=dbt_project.project_dir,
            env={**os.environ, **dbt_cli_env(settings.database_url)},
            check=True,
        )
        yield settings


def run_checks(
    settings: Settings, selection: dg.AssetSelection, *extra: dg.AssetsDefinition
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [raw_quality_checks, mart_quality_checks, *extra],
        selection=selection,
        resources={"hub": hub_resource(settings)},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def evaluations(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], Any]:
    return {
        (e.asset_key.to_user_string(), e.check_name): e
        for e in result.get_asset_check_evaluations()
    }


def test_every_suite_passes_on_good_data_and_reports_each_expectation(
    settings: Settings,
) -> None:
    result = run_checks(settings, dg.AssetSelection.all_asset_checks())

    checks = evaluations(result)
    assert result.success
    assert len(checks) == 14
    assert all(e.passed for e in checks.values())
    valid = checks[("raw/llm_requests", "valid_values")].metadata
    rows = valid["expectations"].value.records
    assert {r.data["expectation"] for r in rows} >= {"latency_ms >= 0", "cost_usd >= 0"}
    assert all(r.data["success"] for r in rows)
    assert all("0 unexpected" in r.data["observed"] for r in rows)
    assert valid["rows_validated"].value > 0
    assert valid["expectations_failed"].value == 0
    counts = checks[("marts/fct_llm_requests_daily", "counts_match_raw")].metadata
    assert counts["rows_validated"].value == 2  # the two complete days


def test_a_request_missing_from_the_daily_mart_fails_counts_match_raw(settings: Settings) -> None:
    # Lands after the build, for yesterday: the mart now undercounts that day.
    late_at = datetime.now(UTC).replace(hour=6, minute=0, second=0, microsecond=0) - timedelta(
        days=1
    )
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        insert_request(conn, late_at, asset="app-late")
    try:
        result = run_checks(settings, dg.AssetSelection.checks(mart_quality_checks))
    finally:
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute("delete from raw.llm_requests where asset_id = 'app-late'")

    checks = evaluations(result)
    check = checks[("marts/fct_llm_requests_daily", "counts_match_raw")]
    assert [key for key, e in checks.items() if not e.passed] == [
        ("marts/fct_llm_requests_daily", "counts_match_raw")
    ]
    assert check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["expectations_failed"].value == 1
    assert "1 unexpected of 2" in check.metadata["failed_expectations"].value
    # Not blocking: a count gap calls for a backfill, not for holding the marts back.
    assert result.success


def test_an_impossible_raw_value_fails_the_blocking_check_and_the_marts_are_not_built(
    settings: Settings,
) -> None:
    # raw.llm_requests has CHECK constraints on latency, tokens and cost, so the impossible
    # value written past the contract here is an unknown severity (an unconstrained column).
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        insert_request(conn, datetime.now(UTC) - timedelta(minutes=1), severity="urgent")
    try:
        result = dg.materialize(
            [dbt_hourly_models, raw_quality_checks, mart_quality_checks],
            # What transform_hourly_job selects.
            selection=dg.AssetSelection.assets(dbt_hourly_models)
            | dg.AssetSelection.checks(
                dg.AssetCheckKey(RAW_REQUESTS, "valid_values"),
                dg.AssetCheckKey(RAW_REQUESTS, "null_rates"),
            ),
            resources=resources(settings),
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
        )
    finally:
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute("delete from raw.llm_requests where severity = 'urgent'")

    check = evaluations(result)[("raw/llm_requests", "valid_values")]
    assert not result.success
    assert not check.passed
    assert "severity in {info, low, medium, high, critical}" in (
        check.metadata["failed_expectations"].value
    )
    assert "urgent" in check.metadata["failed_expectations"].value
    assert result.get_asset_materialization_events() == []


def test_a_corrupt_hourly_mart_fails_the_blocking_check_and_holds_back_the_ml_inputs(
    settings: Settings,
) -> None:
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        key, p95 = conn.execute(
            "select request_hour_key, latency_p95_ms from marts.fct_llm_requests_hourly "
            "where latency_p95_ms is not null order by request_hour_at desc limit 1"
        ).fetchone()
        conn.execute(
            "update marts.fct_llm_requests_hourly set latency_p95_ms = -1 "
            "where request_hour_key = %s",
            (key,),
        )
        try:
            result = run_checks(
                settings,
                dg.AssetSelection.checks(
                    dg.AssetCheckKey(HOURLY, "valid_values"),
                    dg.AssetCheckKey(HOURLY, "null_rates"),
                )
                | dg.AssetSelection.assets(hourly_features),
                hourly_features,
            )
        finally:
            conn.execute(
                "update marts.fct_llm_requests_hourly set latency_p95_ms = %s "
                "where request_hour_key = %s",
                (p95, key),
            )

    checks = evaluations(result)
    assert not checks[("marts/fct_llm_requests_hourly", "valid_values")].passed
    assert checks[("marts/fct_llm_requests_hourly", "null_rates")].passed
    assert "latency_p95_ms >= 0" in (
        checks[("marts/fct_llm_requests_hourly", "valid_values")]
        .metadata["failed_expectations"]
        .value
    )
    assert not result.success
    assert result.get_asset_materialization_events() == []
