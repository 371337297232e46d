"""Sending the outbox, and the check on notifications that keep failing."""

import time

import dagster as dg
from pydantic import Field

from assets import groups
from assets.alerts.outbox import alert_outbox
from assets.resources import HubResource
from llmhub.alerts.sender import Sender

NOTIFICATIONS_DELIVERED = "notifications_delivered"
FAILING_SQL = """
select channel, count(*) filter (where status = 'failed'),
       count(*) filter (where status = 'pending' and attempts >= %(attempts)s),
       (array_agg(notification_key || ': ' || coalesce(last_error, '')
                  order by created_at desc))[1:3]
from alerting.outbox
where (status = 'failed' or (status = 'pending' and attempts >= %(attempts)s))
    and created_at >= now() - interval '1 day'
group by channel
"""


class AlertDeliveryConfig(dg.Config):
    wait_s: float = Field(
        20.0, description="Also wait for retries and group waits falling due within this many s."
    )
    max_deliveries: int | None = Field(None, description="Stop after this many deliveries.")


@dg.asset(
    key=["alerting", "delivery_attempts"],
    group_name=groups.ALERTS,
    kinds={"python", "timescaledb"},
    deps=[alert_outbox],
)
def alert_deliveries(
    context: dg.AssetExecutionContext, config: AlertDeliveryConfig, hub: HubResource
) -> dg.MaterializeResult:
    """Deliveries of due outbox notifications to Slack, PagerDuty, Teams, webhooks and email;
    every attempt is a row of ``alerting.delivery_attempts``.

    One commit per delivery (``select ... for update skip locked``), so an interrupted run loses
    and repeats nothing it committed, and overlapping runs share the work.
    """
    started = time.monotonic()
    sender = Sender(hub.database_url)
    try:
        report = sender.drain(wait_up_to_s=config.wait_s, limit=config.max_deliveries)
        pending = sender.conn.execute(
            "select count(*) from alerting.outbox where status = 'pending'"
        ).fetchone()[0]
    finally:
        sender.close()
    return dg.MaterializeResult(
        metadata={
            "deliveries": report.deliveries,
            "notifications_sent": report.notifications_sent,
            "retries_scheduled": report.retries,
            "failed": report.failed,
            "sent_per_channel": dg.MetadataValue.json(dict(report.per_channel)),
            "failures_per_channel": dg.MetadataValue.json(dict(report.failures_per_channel)),
            "pending_after": pending,
            "duration_s": round(time.monotonic() - started, 3),
        }
    )


@dg.asset_check(asset=alert_deliveries, name=NOTIFICATIONS_DELIVERED)
def notifications_delivered(hub: HubResource) -> dg.AssetCheckResult:
    """Warns when notifications of the last day failed for good or keep failing (3+ attempts):
    someone is not being told. Their last errors are in the metadata (secrets scrubbed)."""
    with hub.connect() as conn:
        rows = conn.execute(FAILING_SQL, {"attempts": 3}).fetchall()
    failed = {channel: f for channel, f, _, _ in rows if f}
    retrying = {channel: r for channel, _, r, _ in rows if r}
    samples = [sample for *_, recent in rows for sample in recent]
    return dg.AssetCheckResult(
        passed=not rows,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "failed_per_channel": dg.MetadataValue.json(failed),
            "still_retrying_per_channel": dg.MetadataValue.json(retrying),
            "recent": dg.MetadataValue.json(samples),
        },
    )
