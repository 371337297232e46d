"""The notification outbox: every source's alertables evaluated against the routing policy."""

import time

import dagster as dg

from assets import groups
from assets.resources import HubResource
from llmhub.alerts.sources import default_sources
from llmhub.alerts.store import evaluate

# What the alertables are made from; the alerts sensor watches these for new materialisations.
ALERT_SOURCE_KEYS = (
    dg.AssetKey(["analytics", "incidents"]),
    dg.AssetKey(["analytics", "anomalies"]),
    dg.AssetKey(["analytics", "budget_projections"]),
    dg.AssetKey(["marts", "fct_slo_burn_rate_alerts"]),
)


@dg.asset(
    key=["alerting", "outbox"],
    group_name=groups.ALERTS,
    kinds={"python", "timescaledb"},
    deps=list(ALERT_SOURCE_KEYS),
)
def alert_outbox(context: dg.AssetExecutionContext, hub: HubResource) -> dg.MaterializeResult:
    """Notifications to send, one row per (alert, route, event) in ``alerting.outbox``.

    Reads the alertables of every source (incidents, registry deploys, anomalous series,
    projected budget breaches, spend burn rates, SLO burn rates), records their state in
    ``alerting.alert_state`` and writes the notifications the routes, silences, quiet hours,
    group wait and repeat interval call for.
    Idempotent: a notification's key is its dedup key, so re-running enqueues nothing twice.
    """
    started = time.monotonic()
    with hub.connect() as conn:
        report = evaluate(conn, default_sources())
    reasons: dict[str, int] = {}
    for held in report.suppressed:
        kind = held.reason.split()[0]
        reasons[kind] = reasons.get(kind, 0) + 1
    context.log.info("alert evaluation: %s", report.to_dict())
    return dg.MaterializeResult(
        metadata={
            "alertables": report.alertables,
            "new_or_changed": report.changed,
            "notifications_enqueued": report.enqueued,
            "already_enqueued": report.duplicates,
            "suppressed": dg.MetadataValue.json(reasons),
            "alertables_per_source": dg.MetadataValue.json(report.per_source),
            "duration_s": round(time.monotonic() - started, 3),
        }
    )
