"""Freshness of the raw tables, judged by the newest event they hold (not by run times)."""

from datetime import UTC, datetime, timedelta

import dagster as dg
from psycopg import sql

from assets.ingestion.raw_tables import raw_table_key
from assets.resources import HubResource
from llmhub.contract.topics import TOPICS

RAW_TABLE_FRESH_CHECK = "raw_table_fresh"

# Telemetry flows every second in production; the other families are sparse by nature.
MAX_AGE = {
    "llm_requests": timedelta(hours=1),
    "cost_records": timedelta(days=2),
    "security_alerts": timedelta(days=1),
    "policy_violations": timedelta(days=1),
    "registry_events": timedelta(days=30),
}


def _freshness_check(table: str, max_age: timedelta) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=raw_table_key(table),
        name=RAW_TABLE_FRESH_CHECK,
        description=f"raw.{table} holds an event newer than {max_age}.",
    )
    def _check(hub: HubResource) -> dg.AssetCheckResult:
        with hub.connect() as conn:
            row = conn.execute(
                sql.SQL(
                    "select max(occurred_at), max(ingested_at) from {} "
                    "where occurred_at > now() - %s"
                ).format(sql.Identifier("raw", table)),
                (max_age * 4,),
            ).fetchone()
        last_event, last_ingest = row if row else (None, None)
        now = datetime.now(UTC)
        age = (now - last_event) if last_event else None
        return dg.AssetCheckResult(
            passed=age is not None and age <= max_age,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "last_event_at": str(last_event) if last_event else "none recent",
                "last_ingested_at": str(last_ingest) if last_ingest else "none recent",
                "age_minutes": round(age.total_seconds() / 60, 1) if age else -1.0,
                "max_age_minutes": max_age.total_seconds() / 60,
            },
        )

    return _check


RAW_FRESHNESS_CHECKS = [_freshness_check(spec.table, MAX_AGE[spec.table]) for spec in TOPICS]
