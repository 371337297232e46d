"""Lanes: one run writing groups of partitions over several connections at once, still exactly
once per partition, with one lane's failure stopping the run and nothing lost on the re-run."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from integration.conftest import IsolatedStack, Raw
from llmhub.contract.topics import RAW_TABLES
from llmhub.ingest.engine import Ingestor, IngestReport
from llmhub.producers.synthetic import generate

pytestmark = pytest.mark.integration

EventFactory = Callable[..., dict[str, Any]]


def _assert_stored_once(stack: IsolatedStack, sent: Counter[tuple[str, int]], dead: int) -> None:
    """Every valid message stored once; offsets at the broker's end on every partition."""
    expected = stack.sent_per_table(sent)
    expected["llm_requests"] -= dead
    assert stack.counts() == expected
    for table in RAW_TABLES:
        distinct = stack.scalar(f"select count(distinct event_id) from raw.{table}")  # noqa: S608
        assert distinct == expected[table], table
    ends = stack.end_offsets()
    assert stack.stored_offsets() == {tp: end for tp, end in ends.items() if end}


def test_lanes_share_the_decoders_and_store_every_message_once(
    stack: IsolatedStack, event: EventFactory
) -> None:
    traffic = generate(events=12_000, days=1.0, seed=21, incidents=True)
    sent = stack.produce(traffic.iter_messages())
    poison = [b"not json", json.dumps(event("telemetry", occurred_at=10**30)).encode()]
    sent += stack.produce(Raw("llm.telemetry", value, key=b"poison") for value in poison)
    seen: list[int] = []

    def on_batch(totals: IngestReport) -> None:
        seen.append(totals.messages)

    report = Ingestor(stack.settings, batch_max_records=1_000, decoders=2, lanes=2).run(
        on_batch=on_batch
    )

    _assert_stored_once(stack, sent, dead=len(poison))
    assert report.messages == sum(sent.values())
    assert report.dead_lettered == {stack.topic("llm.telemetry"): len(poison)}
    assert stack.count("dead_letter") == len(poison)
    assert set(report.lag.values()) == {0}
    assert sorted(report.partitions) == sorted(f"{t}[{p}]" for t, p in stack.partitions())
    # on_batch sees the run's totals over both lanes, growing to the report's.
    assert seen == sorted(seen) and seen[-1] == report.messages
    assert report.batches == len(seen) > 2


@pytest.fixture
def kill_session_on(stack: IsolatedStack) -> Iterator[str]:
    """A trigger that terminates the inserting session when a row of tenant ``kill-lane`` is
    written: the connection of the lane writing it is lost mid-batch."""
    with stack.insert_trigger(
        "kill_lane",
        "llm_requests",
        "perform pg_terminate_backend(pg_backend_pid()); return null;",
        "for each row when (new.tenant_id = 'kill-lane')",
    ):
        yield "kill-lane"


def test_a_lane_losing_its_connection_stops_the_run_and_the_rerun_loses_nothing(
    stack: IsolatedStack, event: EventFactory, kill_session_on: str
) -> None:
    traffic = generate(events=8_000, days=1.0, seed=22, incidents=False)
    sent = stack.produce(traffic.iter_messages())
    killer = json.dumps(event("telemetry", tenant_id=kill_session_on)).encode()
    sent += stack.produce([Raw("llm.telemetry", killer, key=b"killer")])

    with pytest.raises(psycopg.OperationalError):
        Ingestor(stack.settings, batch_max_records=500, lanes=2).run()
    # Whatever the other lane committed, the stored offsets cover exactly the stored rows.
    stored = sum(o for (t, _), o in stack.stored_offsets().items() if "telemetry" in t)
    assert stack.count("llm_requests") == stored
    assert stored < sum(n for (t, _), n in sent.items() if "telemetry" in t)

    stack.conn.execute("drop trigger kill_lane on raw.llm_requests")
    report = Ingestor(stack.settings, batch_max_records=500, lanes=2).run()

    assert report.messages > 0
    _assert_stored_once(stack, sent, dead=0)
