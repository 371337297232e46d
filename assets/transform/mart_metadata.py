"""What each mart materialisation reports in Dagit: rows, the time range covered, the last event."""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

import dagster as dg
import psycopg
from psycopg import sql

Grain = Literal["hour", "day", "month", "event"]


@dataclass(frozen=True)
class MartTiming:
    """Where a mart's time lives.

    Attributes:
        time_column: the mart's bucket (or validity) column.
        grain: ``hour`` / ``day`` / ``month`` buckets, or ``event`` when the column is an event
            time (or the time a snapshot mart was evaluated).
        source_table: the table whose events the mart is built from.
        source_schema: its schema (``raw`` for telemetry, ``alerting`` for the outbox).
        source_time_column: its event-time column.
    """

    time_column: str
    grain: Grain
    source_table: str
    source_schema: str = "raw"
    source_time_column: str = "occurred_at"


MART_TIMING: dict[str, MartTiming] = {
    "fct_llm_requests_hourly": MartTiming("request_hour_at", "hour", "llm_requests"),
    "fct_llm_requests_daily": MartTiming("request_date", "day", "llm_requests"),
    "fct_llm_cost_daily": MartTiming("usage_date", "day", "llm_requests"),
    "fct_security_alerts_daily": MartTiming("alert_date", "day", "security_alerts"),
    "fct_policy_violations_daily": MartTiming("violation_date", "day", "policy_violations"),
    "dim_assets": MartTiming("valid_from", "event", "registry_events"),
    "dim_models": MartTiming("valid_from", "event", "registry_events"),
    "fct_slo_sli_daily": MartTiming("sli_date", "day", "llm_requests"),
    "fct_sla_monthly": MartTiming("report_month", "month", "llm_requests"),
    # Snapshots evaluated at build time over a trailing window.
    "fct_slo_error_budget": MartTiming("evaluated_at", "event", "llm_requests"),
    "fct_slo_burn_rate_alerts": MartTiming("evaluated_at", "event", "llm_requests"),
    "fct_alert_delivery_daily": MartTiming(
        "notification_date",
        "day",
        "outbox",
        source_schema="alerting",
        source_time_column="created_at",
    ),
}


def covered_until(newest: datetime | date | None, grain: Grain) -> datetime | None:
    """The (exclusive) end of the newest bucket, in UTC: the mart holds no event after it.

    Returns None for event-time columns (no bucket to close) and for an empty mart.
    """
    if newest is None or grain == "event":
        return None
    if grain == "hour":
        assert isinstance(newest, datetime)
        return newest.astimezone(UTC) + timedelta(hours=1)
    day = newest.date() if isinstance(newest, datetime) else newest
    if grain == "month":
        day = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
        return datetime.combine(day, time(), tzinfo=UTC)
    return datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)


def _as_metadata(value: datetime | date | None) -> dg.MetadataValue:
    if value is None:
        return dg.MetadataValue.text("none")
    if isinstance(value, datetime):
        return dg.MetadataValue.timestamp(value)
    return dg.MetadataValue.text(value.isoformat())


def mart_metadata(
    conn: psycopg.Connection, schema: str, table: str, timing: MartTiming
) -> dict[str, dg.MetadataValue]:
    """Row count and time range of ``schema.table``, and the newest source event it covers.

    Marts are small (aggregates), so the count is exact; the source lookup is bounded by the end
    of the newest bucket and served by the raw table's ``occurred_at`` index.
    """
    row = conn.execute(
        sql.SQL("select count(*), min({col}), max({col}) from {table}").format(
            col=sql.Identifier(timing.time_column), table=sql.Identifier(schema, table)
        )
    ).fetchone()
    rows, first, last = row if row else (0, None, None)
    until = covered_until(last, timing.grain)
    source = sql.Identifier(timing.source_schema, timing.source_table)
    at = sql.Identifier(timing.source_time_column)
    if until is None:
        query = sql.SQL("select max({at}) from {source}").format(at=at, source=source)
        last_event = conn.execute(query).fetchone()
    else:
        query = sql.SQL("select max({at}) from {source} where {at} < %s").format(
            at=at, source=source
        )
        last_event = conn.execute(query, (until,)).fetchone()
    return {
        "dagster/row_count": dg.MetadataValue.int(int(rows)),
        "time_column": dg.MetadataValue.text(timing.time_column),
        "time_range_start": _as_metadata(first),
        "time_range_end": _as_metadata(last),
        "last_event_at": _as_metadata(last_event[0] if last_event else None),
    }
