"""The dbt project as Dagster assets: raw hypertables -> staging -> intermediate -> marts.

Two definitions split the project by cadence, one ``dbt build`` (models, seeds, unit and data
tests) each; dbt tests are asset checks of the model they test.

- ``dbt_hourly_models``: the incremental request marts and everything upstream of them
  (``+fct_llm_requests_hourly +fct_llm_requests_daily``: the requests and registry staging views,
  ``int_registry__asset_versions``, ``int_llm_requests_enriched``), and ``dim_assets``. The
  registry history is built hourly: the request marts take each request's asset version from it
  (as-of join), and a version first seen by a daily rebuild would leave up to a day of hourly
  buckets, older than the 6-hour lookback, attributed to the previous version until someone
  backfilled them. ``dim_assets``, its mart, is built with it so that the marts' relationship
  tests find every version the hourly buckets carry.
- ``dbt_daily_models``: the rest (``dim_models``, cost, security and compliance marts, the price
  seed), which read closed days.

``@dbt_assets`` reads the manifest when it decorates, so the two definitions are built by
``dbt_model_assets(project)`` from a prepared project, where the Definitions are assembled:
importing this module parses nothing.
"""

import json
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import dagster as dg
import psycopg
from dagster_dbt import DbtCliResource, DbtProject, dbt_assets
from pydantic import Field

from assets.resources import HubResource
from assets.resources.dbt import dbt_cli_environ
from assets.transform.mart_metadata import MART_TIMING, mart_metadata
from assets.transform.translator import HubDbtTranslator

HOURLY_SELECT = "+fct_llm_requests_hourly +fct_llm_requests_daily +dim_assets"
TRANSLATOR = HubDbtTranslator()


class DbtBuildConfig(dg.Config):
    """Options of one ``dbt build``."""

    full_refresh: bool = Field(
        False, description="Rebuild incremental models from scratch (dbt --full-refresh)."
    )


class IncrementalBuildConfig(DbtBuildConfig):
    """Options of a build of the incremental request marts (dbt vars; see dbt_project/README)."""

    lookback_hours: int | None = Field(
        None, description="Reprocess from the newest bucket minus this many hours (default 6)."
    )
    backfill_start: str | None = Field(
        None, description="Rebuild [backfill_start, backfill_end) instead; ISO-8601, UTC if naive."
    )
    backfill_end: str | None = Field(None, description="End of the backfill window (exclusive).")


def dbt_build_args(config: DbtBuildConfig) -> list[str]:
    """The dbt CLI arguments of a build with ``config``.

    Raises:
        ValueError: a negative lookback, or a backfill window with a full refresh (which
            rebuilds everything and ignores the window).
    """
    dbt_vars: dict[str, Any] = {}
    if isinstance(config, IncrementalBuildConfig):
        if config.lookback_hours is not None:
            if config.lookback_hours < 0:
                raise ValueError(f"lookback_hours must be >= 0, got {config.lookback_hours}")
            dbt_vars["lookback_hours"] = config.lookback_hours
        for name in ("backfill_start", "backfill_end"):
            if getattr(config, name):
                dbt_vars[name] = getattr(config, name)
        if config.full_refresh and ("backfill_start" in dbt_vars or "backfill_end" in dbt_vars):
            raise ValueError("a full refresh rebuilds everything; drop backfill_start/end")
    args = ["build"]
    if dbt_vars:
        # dbt unit tests that rely on the project's default vars would fail under overridden
        # ones; they are code tests, run by every ordinary build.
        args += ["--vars", json.dumps(dbt_vars, sort_keys=True), "--exclude", "test_type:unit"]
    if config.full_refresh:
        args.append("--full-refresh")
    return args


def _build(
    context: dg.AssetExecutionContext, config: DbtBuildConfig, dbt: DbtCliResource, hub: HubResource
) -> Iterator[Any]:
    """Run ``dbt build`` against the hub database; add row count and time range to each mart.

    The invocation's artifacts directory (``target/<op>-<run>-<id>``, a few MB) is removed once
    the build succeeded, or hourly runs would fill the disk; a failed build keeps it (dbt.log,
    run_results.json) for debugging.
    """
    with dbt_cli_environ(hub.database_url):
        invocation = dbt.cli(dbt_build_args(config), context=context)
    with ExitStack() as stack:
        conn: psycopg.Connection | None = None
        for event in invocation.stream():
            if isinstance(event, dg.Output):
                key = context.asset_key_for_output(event.output_name)
                timing = MART_TIMING.get(key.path[-1]) if key.path[0] == "marts" else None
                if timing is not None:
                    if conn is None:
                        conn = stack.enter_context(hub.connect())
                    extra = mart_metadata(conn, key.path[0], key.path[-1], timing)
                    event = event.with_metadata({**event.metadata, **extra})
            yield event
    shutil.rmtree(invocation.target_path, ignore_errors=True)


def dbt_model_assets(project: DbtProject) -> tuple[dg.AssetsDefinition, dg.AssetsDefinition]:
    """The hourly and daily dbt definitions of ``project``, whose manifest must exist (see
    ``assets.resources.dbt.prepare``).

    Returns:
        ``(dbt_hourly_models, dbt_daily_models)``.
    """

    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        dagster_dbt_translator=TRANSLATOR,
        select=HOURLY_SELECT,
        name="dbt_hourly_models",
    )
    def dbt_hourly_models(
        context: dg.AssetExecutionContext,
        config: IncrementalBuildConfig,
        dbt: DbtCliResource,
        hub: HubResource,
    ):
        """Request marts (the ML inputs) and their upstream views and dimension, built hourly.

        Driven by ``transform_hourly_schedule`` (minute 10 of every hour), not an eager automation
        condition: ingestion materialises the raw tables every minute, so eager would start a dbt
        build every minute (with its tests, some of which scan all of raw through the staging
        views), while an hour bucket closes once an hour; the 6-hour lookback folds in late events.
        A schedule is also visible and pausable in Dagit, and skips a tick while the previous build
        still runs (two overlapping delete+insert builds of one bucket could both insert it).
        """
        yield from _build(context, config, dbt, hub)

    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        dagster_dbt_translator=TRANSLATOR,
        exclude=HOURLY_SELECT,
        name="dbt_daily_models",
    )
    def dbt_daily_models(
        context: dg.AssetExecutionContext,
        config: DbtBuildConfig,
        dbt: DbtCliResource,
        hub: HubResource,
    ):
        """Daily marts (cost, security, compliance), the model dimension and the price seed.

        Driven by ``transform_daily_schedule`` (01:30 UTC): the day is closed, its request buckets
        are in ``fct_llm_requests_daily``, and billing records for it have usually arrived.
        """
        yield from _build(context, config, dbt, hub)

    return dbt_hourly_models, dbt_daily_models
