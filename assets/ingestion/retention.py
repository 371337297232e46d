"""Retention of raw data, scheduled by Dagster (drop_chunks works on the Apache build)."""

import dagster as dg
from pydantic import Field

from assets import groups
from assets.resources import HubResource
from llmhub.retention import apply_retention


class RetentionConfig(dg.Config):
    dead_letter_days: int = Field(90, description="Days dead letters are kept.")


@dg.asset(
    key=["raw", "retention_runs"],
    group_name=groups.INGESTION,
    kinds={"timescaledb"},
    description="One row per table per retention run: chunks dropped for being entirely older "
    "than the table's window (LLMHUB_RETENTION_*_DAYS: telemetry 30, security and governance "
    "90 by default).",
)
def retention_runs(
    context: dg.AssetExecutionContext, config: RetentionConfig, hub: HubResource
) -> dg.MaterializeResult:
    """Apply per-table retention with ``drop_chunks`` and record what was dropped."""
    settings = hub.settings()
    with hub.connect() as conn:
        results = apply_retention(conn, settings.retention.days, config.dead_letter_days)
    for result in results:
        context.log.info(
            f"{result.table}: keep {result.keep_days} d, dropped {result.dropped_chunks}"
        )
    return dg.MaterializeResult(
        metadata={
            "keep_days": dg.MetadataValue.json({r.table: r.keep_days for r in results}),
            "dropped_chunks": sum(
                len(r.dropped_chunks) for r in results if r.table != "dead_letter"
            ),
        }
    )
