"""Incidents: one per root cause, with its members, ranked causes and excess cost."""

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import dagster as dg
import pandas as pd
from pydantic import Field

from assets import groups
from assets.resources import HubResource
from llmhub.incidents import store

INCIDENTS_KEY = dg.AssetKey(["analytics", "incidents"])
MEMBERS_KEY = dg.AssetKey(["analytics", "incident_members"])
UPSTREAM = [
    dg.AssetKey(["analytics", "anomalies"]),
    dg.AssetKey(["analytics", "forecasts"]),
    dg.AssetKey(["raw", "security_alerts"]),
    dg.AssetKey(["raw", "policy_violations"]),
    dg.AssetKey(["raw", "registry_events"]),
    dg.AssetKey(["raw", "cost_records"]),
    dg.AssetKey(["marts", "fct_llm_requests_hourly"]),
]
INCIDENT_INTEGRITY = "incident_integrity"


class IncidentsConfig(dg.Config):
    lookback_hours: int = Field(
        48,
        description="Flagged anomalies read per pass; incidents seen in the window are "
        "recomputed and upserted by their stable id (late data updates, never duplicates).",
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            INCIDENTS_KEY,
            deps=UPSTREAM,
            kinds={"python", "timescaledb"},
            description="One row per incident (key incident_id, stable across re-runs): root "
            "cause, ranked candidates, impact score, excess cost and its split, status.",
        ),
        dg.AssetSpec(
            MEMBERS_KEY,
            deps=[INCIDENTS_KEY],
            kinds={"timescaledb"},
            description="One row per (incident, member): the anomalies and events of each "
            "incident.",
        ),
    ],
    group_name=groups.INCIDENTS,
    can_subset=False,
)
def incidents(
    context: dg.AssetExecutionContext, config: IncidentsConfig, hub: HubResource
) -> Iterator[dg.MaterializeResult]:
    """Correlate the flagged anomalies of the last ``lookback_hours`` with registry changes,
    security alerts, policy violations and the forecasts into incidents (``ml.correlation``).

    Grain: one row per incident in ``analytics.incidents`` and one per member in
    ``analytics.incident_members``; upserted by ``incident_id``. Open incidents whose members
    stopped for the quiet period are resolved.
    """
    from ml.correlation import lifecycle

    started = time.monotonic()
    now = datetime.now(UTC)
    since = store.lookback_start(now, config.lookback_hours)
    with hub.connect() as conn:
        inputs = store.read_inputs(conn, since)
    result = store.correlate_inputs(inputs, pd.Timestamp(now))
    with hub.connect() as conn:
        report = store.upsert_incidents(conn, result.incidents, since)
        quiet = store.resolve_quiet(conn, now, lifecycle.QUIET_PERIOD.to_pytimedelta())
    context.log.info(
        f"{len(result.incidents)} incidents ({report.opened} new, {report.updated} updated) from "
        f"{len(inputs.anomalies)} flagged anomalies and {len(inputs.events)} events"
    )
    yield dg.MaterializeResult(
        asset_key=INCIDENTS_KEY,
        metadata={
            "incidents": len(result.incidents),
            "opened": report.opened,
            "updated": report.updated,
            "resolved": report.resolved + quiet,
            "by_root_cause": dg.MetadataValue.json(report.by_root_cause),
            "anomalies_read": len(inputs.anomalies),
            "anomalies_suppressed_by_forecast": result.suppressed,
            "anomalies_unassigned": result.unassigned,
            "events_read": len(inputs.events),
            "excess_cost_usd": round(sum(i.cost.excess_usd for i in result.incidents), 2),
            "window_start": since.isoformat(),
            "duration_s": round(time.monotonic() - started, 2),
        },
    )
    yield dg.MaterializeResult(asset_key=MEMBERS_KEY, metadata={"rows_written": report.members})


INTEGRITY = """
select
    (select count(*) from analytics.incidents i where not exists (
        select from analytics.incident_members m where m.incident_id = i.incident_id)),
    (select count(*) from analytics.incidents a join analytics.incidents b
        on a.root_cause_type = b.root_cause_type and a.root_cause_entity = b.root_cause_entity
        and a.tenant_id = b.tenant_id and a.incident_id < b.incident_id
        and a.status = 'open' and b.status = 'open')
"""


@dg.asset_check(asset=INCIDENTS_KEY, name=INCIDENT_INTEGRITY)
def incident_integrity(hub: HubResource) -> dg.AssetCheckResult:
    """Every incident has members, and no root cause has two open incidents for one tenant
    (what a stable-id bug would produce)."""
    with hub.connect() as conn:
        without_members, duplicate_open = conn.execute(INTEGRITY).fetchone()
    return dg.AssetCheckResult(
        passed=without_members == 0 and duplicate_open == 0,
        metadata={
            "incidents_without_members": int(without_members),
            "duplicate_open_incidents": int(duplicate_open),
        },
    )
