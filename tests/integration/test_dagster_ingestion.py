"""The kafka_ingestion multi-asset run by Dagster against the real broker and TimescaleDB."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dagster as dg
import orjson
import pytest

from assets.ingestion import kafka_ingestion
from assets.ingestion.raw_tables import (
    CONSUMER_LAG_CHECK,
    DEAD_LETTER_KEY,
    DEAD_LETTER_RATE_CHECK,
)
from assets.resources import HubResource
from integration.conftest import IsolatedStack
from llmhub.contract.topics import RAW_TABLES
from llmhub.producers.synthetic import generate

pytestmark = pytest.mark.integration

EventFactory = Callable[..., dict[str, Any]]


def _materialize(stack: IsolatedStack) -> dg.ExecuteInJobResult:
    hub = HubResource(
        database_url=stack.settings.database_url,
        kafka_bootstrap=stack.settings.kafka_bootstrap,
        topic_prefix=stack.prefix,
        consumer_group=stack.settings.consumer_group,
    )
    return dg.materialize(
        [kafka_ingestion],
        resources={"hub": hub},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def _metadata(result: dg.ExecuteInJobResult) -> dict[str, dict[str, Any]]:
    return {
        m.asset_key.path[-1]: {key: value.value for key, value in m.metadata.items()}
        for m in result.asset_materializations_for_node("kafka_ingestion")
    }


def test_ingestion_asset_writes_what_was_produced(stack: IsolatedStack) -> None:
    traffic = generate(events=2_000, days=1.0, seed=14, incidents=True)
    expected = stack.sent_per_table(stack.produce(traffic.iter_messages()))

    result = _materialize(stack)

    assert result.success
    metadata = _metadata(result)
    assert {table: metadata[table]["rows_written"] for table in RAW_TABLES} == expected
    assert all(metadata[table]["consumer_lag"] == 0 for table in RAW_TABLES)
    assert metadata[DEAD_LETTER_KEY.path[-1]]["rows_dead_lettered"] == 0
    assert metadata[DEAD_LETTER_KEY.path[-1]]["messages_read"] == sum(expected.values())
    evaluations = result.get_asset_check_evaluations()
    assert {(e.asset_key.path[-1], e.check_name) for e in evaluations} == {
        (table, check)
        for table in RAW_TABLES
        for check in (DEAD_LETTER_RATE_CHECK, CONSUMER_LAG_CHECK)
    }
    assert all(e.passed for e in evaluations)
    assert stack.counts() == expected

    rerun = _materialize(stack)

    assert rerun.success
    assert all(m["rows_written"] == 0 for t, m in _metadata(rerun).items() if t in RAW_TABLES)
    assert stack.counts() == expected


def test_mostly_garbage_fails_the_blocking_dead_letter_check(
    stack: IsolatedStack, event: EventFactory
) -> None:
    good = [orjson.dumps(event("telemetry")) for _ in range(10)]
    garbage = [b"garbage %d" % i for i in range(90)]
    stack.send("llm.telemetry", good + garbage)
    stack.send("llm.cost", [orjson.dumps(event("cost")) for _ in range(5)])

    result = _materialize(stack)

    assert not result.success
    checks = {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}
    failed = checks[("llm_requests", DEAD_LETTER_RATE_CHECK)]
    assert not failed.passed
    assert failed.metadata["dead_letter_rate"].value == pytest.approx(0.9)
    assert failed.metadata["dead_lettered"].value == 90
    assert checks[("cost_records", DEAD_LETTER_RATE_CHECK)].passed
    # The rows were committed with their offsets before the check ran; the gate stops
    # downstream assets, not the exactly-once bookkeeping.
    assert stack.count("llm_requests") == 10
    assert stack.count("dead_letter") == 90
    assert _metadata(result)[DEAD_LETTER_KEY.path[-1]]["rows_dead_lettered"] == 90
