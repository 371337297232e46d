"""The dbt translator against the project's real manifest: keys, groups, kinds, source mapping."""

import json
from typing import Any

import dagster as dg
import pytest

from assets.groups import TRANSFORM as GROUP
from assets.resources.dbt import dbt_project, prepare
from assets.transform import dbt_model_assets
from assets.transform.mart_metadata import MART_TIMING
from assets.transform.translator import KINDS, HubDbtTranslator
from llmhub.contract.topics import RAW_TABLES

dbt_hourly_models, dbt_daily_models = dbt_model_assets(prepare(dbt_project))


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return json.loads(dbt_project.manifest_path.read_text())


@pytest.fixture(scope="module")
def specs() -> dict[dg.AssetKey, dg.AssetSpec]:
    return {
        spec.key: spec
        for assets_def in (dbt_hourly_models, dbt_daily_models)
        for spec in assets_def.specs
    }


def _unique_id(manifest: dict[str, Any], name: str) -> str:
    return next(uid for uid, node in manifest["nodes"].items() if node["name"] == name)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("stg_raw__llm_requests", ["staging", "stg_raw__llm_requests"]),
        ("int_llm_requests_enriched", ["intermediate", "int_llm_requests_enriched"]),
        ("fct_llm_requests_hourly", ["marts", "fct_llm_requests_hourly"]),
        ("dim_assets", ["marts", "dim_assets"]),
        ("model_prices", ["seeds", "model_prices"]),
    ],
)
def test_models_and_seeds_are_keyed_schema_then_name(
    manifest: dict[str, Any], name: str, key: list[str]
) -> None:
    translator = HubDbtTranslator()
    spec = translator.get_asset_spec(manifest, _unique_id(manifest, name), dbt_project)

    assert spec.key == dg.AssetKey(key)
    assert spec.group_name == GROUP
    assert set(spec.kinds) == KINDS


@pytest.mark.parametrize("table", [*RAW_TABLES, "dead_letter"])
def test_sources_are_the_ingestion_assets(manifest: dict[str, Any], table: str) -> None:
    spec = HubDbtTranslator().get_asset_spec(manifest, f"source.llmhub.raw.{table}", dbt_project)

    assert spec.key == dg.AssetKey(["raw", table])


def test_every_model_and_seed_is_one_asset_of_the_transform_group(
    manifest: dict[str, Any], specs: dict[dg.AssetKey, dg.AssetSpec]
) -> None:
    nodes = {
        dg.AssetKey([node["config"]["schema"], node["name"]])
        for node in manifest["nodes"].values()
        if node["resource_type"] in ("model", "seed", "snapshot")
    }

    assert set(specs) == nodes
    assert not set(dbt_hourly_models.keys) & set(dbt_daily_models.keys)
    assert {spec.group_name for spec in specs.values()} == {GROUP}
    assert all(set(spec.kinds) == KINDS for spec in specs.values())
    assert all(spec.description for spec in specs.values())


def test_staging_depends_on_the_raw_ingestion_keys(specs: dict[dg.AssetKey, dg.AssetSpec]) -> None:
    deps = {
        key.path[-1]: {dep.asset_key for dep in spec.deps}
        for key, spec in specs.items()
        if key.path[0] == "staging"
    }

    assert deps == {f"stg_raw__{table}": {dg.AssetKey(["raw", table])} for table in RAW_TABLES}


def test_the_hourly_definition_holds_the_request_marts_and_what_they_read() -> None:
    assert {key.to_user_string() for key in dbt_hourly_models.keys} == {
        "staging/stg_raw__llm_requests",
        "staging/stg_raw__registry_events",
        "intermediate/int_registry__asset_versions",
        "marts/dim_assets",
        "intermediate/int_llm_requests_enriched",
        "marts/fct_llm_requests_hourly",
        "marts/fct_llm_requests_daily",
    }


def test_dbt_tests_are_checks_of_the_model_they_test() -> None:
    checks = {key.to_user_string() for key in dbt_hourly_models.check_keys}

    assert "marts/fct_llm_requests_hourly:unique_fct_llm_requests_hourly_request_hour_key" in checks
    assert "marts/dim_assets:assert_dim_assets_history_is_contiguous" in checks


def test_every_mart_reports_its_time_range(specs: dict[dg.AssetKey, dg.AssetSpec]) -> None:
    # A new mart without an entry would materialise without row count and time range.
    marts = {key.path[-1] for key in specs if key.path[0] == "marts"}

    assert marts == set(MART_TIMING)
