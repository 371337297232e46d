"""Retention drops whole raw chunks past a table's window, and records every run."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import orjson
import pytest

from assets.ingestion import retention_runs
from assets.resources import HubResource
from integration.conftest import IsolatedStack
from llmhub.retention import apply_retention

pytestmark = pytest.mark.integration

EventFactory = Callable[..., dict[str, Any]]


def _ingest_aged(stack: IsolatedStack, event: EventFactory) -> dict[str, set[str]]:
    """Telemetry 40 and 1 days old, and cost records 40 days old; returns event ids by group."""
    now = datetime.now(UTC)
    groups: dict[str, list[dict[str, Any]]] = {
        "old_telemetry": [
            event("telemetry", occurred_at=(now - timedelta(days=40, hours=h)).isoformat())
            for h in range(5)
        ],
        "recent_telemetry": [
            event("telemetry", occurred_at=(now - timedelta(days=1, hours=h)).isoformat())
            for h in range(5)
        ],
        "old_cost": [
            event("cost", occurred_at=(now - timedelta(days=40)).isoformat()) for _ in range(3)
        ],
    }
    for name, events in groups.items():
        topic = "llm.cost" if name == "old_cost" else "llm.telemetry"
        stack.send(topic, [orjson.dumps(e) for e in events])
    report = stack.ingest()
    assert report.rows_written == {"llm_requests": 10, "cost_records": 3}
    return {name: {e["event_id"] for e in events} for name, events in groups.items()}


def _ids(stack: IsolatedStack, table: str) -> set[str]:
    return {row[0] for row in stack.query(f"select event_id::text from raw.{table}")}  # noqa: S608


def test_retention_drops_only_chunks_past_the_window(
    stack: IsolatedStack, event: EventFactory
) -> None:
    ids = _ingest_aged(stack, event)
    chunks_before = stack.scalar(
        "select count(*) from timescaledb_information.chunks where hypertable_name = 'llm_requests'"
    )

    results = apply_retention(stack.conn, {"llm_requests": 30})

    assert [(r.table, r.keep_days) for r in results] == [("llm_requests", 30)]
    dropped = results[0].dropped_chunks
    assert dropped and all("chunk" in name for name in dropped)
    assert _ids(stack, "llm_requests") == ids["recent_telemetry"]
    # Tables without a window in this run are left alone, however old their rows.
    assert _ids(stack, "cost_records") == ids["old_cost"]
    chunks_after = stack.scalar(
        "select count(*) from timescaledb_information.chunks where hypertable_name = 'llm_requests'"
    )
    assert chunks_after == chunks_before - len(dropped)
    runs = stack.query("select table_name, keep_days, dropped_chunks from raw.retention_runs")
    assert runs == [("llm_requests", 30, dropped)]

    again = apply_retention(stack.conn, {"llm_requests": 30})

    assert again[0].dropped_chunks == []
    assert _ids(stack, "llm_requests") == ids["recent_telemetry"]
    assert stack.scalar("select count(*) from raw.retention_runs") == 2


def test_old_dead_letters_are_deleted(stack: IsolatedStack) -> None:
    stack.conn.execute(
        "insert into raw.dead_letter (topic, kafka_partition, kafka_offset, raw_value, "
        "error_class, error, received_at) values "
        "('t', 0, 0, 'old', 'schema', 'x', now() - interval '100 days'), "
        "('t', 0, 1, 'new', 'schema', 'x', now() - interval '1 day')"
    )

    results = apply_retention(stack.conn, {}, dead_letter_days=90)

    assert [(r.table, r.dropped_chunks) for r in results] == [("dead_letter", ["1 rows"])]
    assert [bytes(row[0]) for row in stack.query("select raw_value from raw.dead_letter")] == [
        b"new"
    ]


@pytest.mark.parametrize("days", [0, -1])
def test_non_positive_windows_are_refused(stack: IsolatedStack, days: int) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        apply_retention(stack.conn, {"llm_requests": days})
    assert stack.scalar("select count(*) from raw.retention_runs") == 0


def test_retention_asset_applies_the_configured_windows(
    stack: IsolatedStack, event: EventFactory
) -> None:
    ids = _ingest_aged(stack, event)
    hub = HubResource(
        database_url=stack.settings.database_url,
        kafka_bootstrap=stack.settings.kafka_bootstrap,
        topic_prefix=stack.prefix,
        consumer_group=stack.settings.consumer_group,
    )

    result = dg.materialize(
        [retention_runs], resources={"hub": hub}, instance=dg.DagsterInstance.ephemeral()
    )

    assert result.success
    (materialization,) = result.asset_materializations_for_node("raw__retention_runs")
    windows = hub.settings().retention.days
    assert materialization.metadata["keep_days"].value == {**windows, "dead_letter": 90}
    assert materialization.metadata["dropped_chunks"].value >= 1
    assert windows["llm_requests"] < 40 < windows["cost_records"]
    assert _ids(stack, "llm_requests") == ids["recent_telemetry"]
    assert _ids(stack, "cost_records") == ids["old_cost"]
    recorded = {row[0] for row in stack.query("select table_name from raw.retention_runs")}
    assert recorded == set(windows)
