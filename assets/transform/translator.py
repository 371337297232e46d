"""How dbt nodes become Dagster assets: keys, group, kinds, and the link to the ingestion assets."""

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtProject

from assets import groups

KINDS = {"dbt", "timescaledb"}


class HubDbtTranslator(DagsterDbtTranslator):
    """Models and seeds are keyed ``[schema, name]`` (``["marts", "fct_llm_requests_hourly"]``,
    ``["seeds", "model_prices"]``), the schema being the one the project writes them to; sources
    take ``meta.dagster.asset_key`` (``["raw", "llm_requests"]``), which are the ingestion
    assets' keys, so the lineage runs Kafka -> raw -> staging -> intermediate -> marts in one
    graph.

    Every dbt asset is in group ``transform`` (the assets subpackage): the layer is already the
    first part of the key, and cadence (hourly or daily) is a job's concern, not a group's.
    dbt tests are asset checks (dagster-dbt's default, kept explicit).
    """

    def __init__(self) -> None:
        super().__init__(DagsterDbtTranslatorSettings(enable_asset_checks=True))

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return super().get_asset_key(dbt_resource_props)
        schema = dbt_resource_props["config"].get("schema") or dbt_resource_props["schema"]
        return dg.AssetKey([schema, dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return None if dbt_resource_props["resource_type"] == "source" else groups.TRANSFORM

    def get_asset_spec(
        self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None
    ) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        if unique_id.startswith("source."):
            return spec
        # The adapter is postgres; the database is TimescaleDB, as for the ingestion assets.
        return spec.replace_attributes(kinds=KINDS)
