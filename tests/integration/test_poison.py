"""Poison messages: nothing a producer sends (values, timestamps, keys, headers) stops ingestion,
and a transaction the database refuses as a whole is narrowed down to the message behind it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from integration.conftest import IsolatedStack, Raw
from llmhub.ingest import engine

pytestmark = pytest.mark.integration

EventFactory = Callable[..., dict[str, Any]]
TELEMETRY = "llm.telemetry"


def _dumps(value: Any) -> bytes:
    # The standard library, unlike orjson, serialises integers beyond 64 bits.
    return json.dumps(value, separators=(",", ":")).encode()


def test_a_400_digit_timestamp_is_dead_lettered_and_the_cli_exits_0(
    stack: IsolatedStack, event: EventFactory
) -> None:
    # Regression: OverflowError escaped the contract; `llmhub ingest` exited 1 on every retry
    # and the partition never moved again.
    poison = _dumps(event("telemetry", occurred_at=10**399))
    good = [_dumps(event("telemetry")) for _ in range(20)]
    stack.send(TELEMETRY, [good[0], poison, *good[1:]], key=b"one-partition")

    out = stack.run_cli("ingest", "--json", name="ingest")

    assert json.loads(out)["rows_written"] == {"llm_requests": len(good)}
    assert stack.count("llm_requests") == len(good)
    dead = stack.query("select raw_value, error_class, error from raw.dead_letter")
    assert [(bytes(value), error_class) for value, error_class, _ in dead] == [(poison, "schema")]
    assert "occurred_at" in dead[0][2]


@pytest.fixture
def refuse_tenant(stack: IsolatedStack) -> Iterator[str]:
    """A deferred constraint trigger refusing, at commit, any transaction that stored a row of
    tenant ``poison``: the database refuses the whole transaction, no single statement fails."""
    with stack.insert_trigger(
        "refuse_poison",
        "security_alerts",
        "if new.tenant_id = 'poison' then "
        "raise exception 'tenant poison refused at commit' using errcode = 'P0001'; "
        "end if; return null;",
        "deferrable initially deferred for each row",
        constraint=True,
    ):
        yield "poison"


def test_a_transaction_refused_at_commit_is_split_until_the_message_is_isolated(
    stack: IsolatedStack,
    event: EventFactory,
    refuse_tenant: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engine, "RETRY_WAIT_S", (0.01, 0.02))
    values = [_dumps(event("security")) for _ in range(40)]
    poison = _dumps(event("security", tenant_id=refuse_tenant))
    values.insert(23, poison)
    values.insert(31, b"not json")
    stack.send("llm.security", values, key=b"one-partition")

    report = stack.ingest()

    assert report.batches_split == 1
    assert stack.count("security_alerts") == 40
    dead = dict(
        (bytes(value), (error_class, error))
        for value, error_class, error in stack.query(
            "select raw_value, error_class, error from raw.dead_letter"
        )
    )
    assert set(dead) == {poison, b"not json"}
    assert dead[poison][0] == "database"
    assert "tenant poison refused at commit" in dead[poison][1]
    assert dead[b"not json"][0] == "invalid_json"
    assert sum(stack.stored_offsets().values()) == len(values)
    assert set(report.lag.values()) == {0}


def test_events_spread_over_years_are_stored_in_bounded_transactions(
    stack: IsolatedStack, event: EventFactory
) -> None:
    # One day chunk per distinct day: a single transaction writing all of them would hold
    # thousands of locks (max_locks_per_transaction) and be refused as a whole.
    now = datetime.now(UTC)
    days = 200
    values = [
        _dumps(event("telemetry", occurred_at=(now - timedelta(days=d * 9)).isoformat()))
        for d in range(days)
    ]
    stack.send(TELEMETRY, values, key=b"one-partition")

    report = stack.ingest()

    assert stack.count("llm_requests") == days
    assert report.dead_lettered == {}
    assert report.batches >= days // engine.MAX_DAYS_PER_BATCH
    assert report.batches_split == 0


@pytest.mark.parametrize(
    "timestamp_ms",
    [None, 0, -1, -(2**40), 253_402_300_800_000, 2**62],
    ids=["missing", "epoch", "minus-one", "negative", "year-10000", "2^62"],
)
def test_absurd_broker_metadata_never_stops_ingestion(
    stack: IsolatedStack, event: EventFactory, timestamp_ms: int | None
) -> None:
    records = [
        Raw(TELEMETRY, _dumps(event("telemetry")), key=b"k", timestamp_ms=timestamp_ms),
        Raw(TELEMETRY, b"\xff not json", key=b"\x00\xff" * 300, timestamp_ms=timestamp_ms),
        Raw(TELEMETRY, _dumps(event("telemetry")), key=None, timestamp_ms=timestamp_ms),
    ]
    sent = sum(stack.produce(records).values())

    report = stack.ingest()

    assert report.messages == sent
    assert stack.count("llm_requests") == 2
    dead = stack.query("select message_key, error_class, kafka_timestamp from raw.dead_letter")
    assert [(bytes(key), error_class) for key, error_class, _ in dead] == [
        (b"\x00\xff" * 300, "not_utf8")
    ]
