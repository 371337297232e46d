"""Property-based fuzzing of ingestion through the real broker and database.

Hypothesis draws runs of messages: valid events of every family between random bytes, mutated
events (a field set to any JSON value, a field deleted, epoch numbers of any size, truncated or
spliced bytes, tombstones), each with random broker metadata (CreateTime anywhere in the int64
range or missing, any key, any headers). After `llmhub ingest` (which must exit 0), every message
is accounted for exactly once: a row at its offset or a dead letter, never both, never neither;
every valid event is stored once; the consumer is caught up.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from integration.conftest import IsolatedStack
from llmhub.contract.models import EVENT_MODELS
from llmhub.contract.topics import BY_FAMILY, TOPICS
from llmhub.ingest.normalize import ErrorClass

pytestmark = pytest.mark.integration

EventFactory = Callable[..., dict[str, Any]]
FAMILIES = [spec.family for spec in TOPICS]
ENVELOPE_KEYS = [
    "event_id",
    "event_type",
    "source_module",
    "occurred_at",
    "tenant_id",
    "asset_id",
    "severity",
    "schema_version",
    "body",
]


@dataclass(frozen=True)
class Sent:
    family: str
    value: bytes | None
    key: bytes | None
    timestamp_ms: int | None
    headers: list[tuple[str, bytes]]
    valid: bool  # built valid and left untouched


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=True).encode()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**420), max_value=10**420)
    | st.floats()
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
epochs = st.one_of(
    st.integers(min_value=-(10**400), max_value=10**400),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(),
    st.text(alphabet="0123456789", min_size=1, max_size=420),
)


@st.composite
def mutated(draw: st.DrawFn, event: dict[str, Any]) -> bytes | None:
    """``event`` changed in one of several ways (the result may or may not still be valid)."""
    how = draw(st.sampled_from(["set", "delete", "epoch", "truncate", "splice", "tombstone"]))
    if how == "tombstone":
        return None
    if how == "set":
        where = draw(st.sampled_from(["envelope", "body"]))
        target = event if where == "envelope" else event["body"]
        key = draw(st.sampled_from(sorted(target)) | st.text(max_size=12))
        target[key] = draw(json_values)
    elif how == "delete":
        where = draw(st.sampled_from(["envelope", "body"]))
        target = event if where == "envelope" else event["body"]
        if target:
            del target[draw(st.sampled_from(sorted(target)))]
    elif how == "epoch":
        event["occurred_at"] = draw(epochs)
    value = _dumps(event)
    if how == "truncate":
        return value[: draw(st.integers(min_value=0, max_value=len(value) - 1))]
    if how == "splice":
        at = draw(st.integers(min_value=0, max_value=len(value)))
        return value[:at] + draw(st.binary(min_size=1, max_size=8)) + value[at:]
    return value


header_keys = st.text(st.characters(exclude_categories=("Cs",)), max_size=10)
metadata = st.fixed_dictionaries(
    {
        "key": st.none() | st.binary(max_size=40),
        "timestamp_ms": st.none() | st.integers(min_value=-(2**62), max_value=2**62),
        "headers": st.lists(st.tuples(header_keys, st.binary(max_size=20)), max_size=3),
    }
)


@st.composite
def messages(draw: st.DrawFn, make_event: EventFactory) -> Sent:
    family = draw(st.sampled_from(FAMILIES))
    meta = draw(metadata)
    kind = draw(st.sampled_from(["valid", "valid", "mutated", "random"]))
    if kind == "valid":
        value: bytes | None = _dumps(make_event(family))
    elif kind == "mutated":
        value = draw(mutated(make_event(family)))
    else:
        value = draw(st.binary(max_size=200))
    # Kafka needs a key or a value: a tombstone always carries a key.
    key = meta["key"] if value is not None or meta["key"] is not None else b"tombstone"
    return Sent(family, value, key, meta["timestamp_ms"], meta["headers"], kind == "valid")


def _produce(stack: IsolatedStack, batch: list[Sent]) -> list[tuple[str, int, int]]:
    """Send ``batch`` in order; return (physical topic, partition, offset) per message. The last
    message of each partition goes after a flush, in a record batch of its own (see conftest)."""
    producer = stack.producer()
    partitions = {spec.family: spec.partitions for spec in TOPICS}
    where = [
        (stack.topic(BY_FAMILY[m.family].topic), i % partitions[m.family])
        for i, m in enumerate(batch)
    ]
    last = {place: i for i, place in enumerate(where)}
    futures: dict[int, Any] = {}

    def send(i: int) -> None:
        m = batch[i]
        futures[i] = producer.send(
            where[i][0],
            value=m.value,
            key=m.key,
            partition=where[i][1],
            timestamp_ms=m.timestamp_ms,
            headers=m.headers,
        )

    for i in range(len(batch)):
        if last[where[i]] != i:
            send(i)
    producer.flush()
    for i in sorted(last.values()):
        send(i)
    producer.flush()
    placed = []
    for i in range(len(batch)):
        metadata = futures[i].get(timeout=30)
        placed.append((metadata.topic, metadata.partition, metadata.offset))
    return placed


@pytest.mark.timeout(900)
def test_every_message_is_stored_once_or_dead_lettered(
    stack: IsolatedStack, event: EventFactory
) -> None:
    tables = {stack.topic(spec.topic): spec.table for spec in TOPICS}
    seen: Counter[str] = Counter()

    @settings(
        max_examples=8,
        deadline=None,
        database=None,
        # Each example is a real ingestion run (seconds): shrinking would take minutes; the
        # failing run is printed in full instead.
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(batch=st.lists(messages(event), min_size=1, max_size=50))
    def check(batch: list[Sent]) -> None:
        placed = _produce(stack, batch)

        summary = json.loads(stack.run_cli("ingest", "--json", name="fuzz-ingest"))

        assert set(summary["lag"].values()) == {0}, summary["lag"]
        for (topic, partition, offset), sent in zip(placed, batch, strict=True):
            table = tables[topic]
            rows = stack.query(
                f"select event_id::text from raw.{table} "  # noqa: S608 (names from the contract)
                "where kafka_partition = %s and kafka_offset = %s",
                (partition, offset),
            )
            dead = stack.query(
                "select error_class, error from raw.dead_letter "
                "where topic = %s and kafka_partition = %s and kafka_offset = %s",
                (topic, partition, offset),
            )
            assert len(rows) + len(dead) == 1, (sent, rows, dead)
            seen["stored" if rows else "dead-lettered"] += 1
            if sent.valid:
                event_id = json.loads(sent.value or b"")["event_id"]
                assert rows == [(event_id,)], (sent, dead)
                count = stack.scalar(
                    f"select count(*) from raw.{table} where event_id = %s",  # noqa: S608
                    (event_id,),
                )
                assert count == 1
            elif rows:  # a mutation that kept the event valid: the contract must agree
                EVENT_MODELS[sent.family].model_validate_json(sent.value or b"")
            else:
                assert dead[0][0] in set(ErrorClass), dead
                assert dead[0][1]
        stored = stack.stored_offsets()
        for topic, partition, offset in placed:
            assert stored[(topic, partition)] > offset

    check()
    # The draws did mix both outcomes (a guard against a generator that produces one kind).
    assert seen["stored"] and seen["dead-lettered"], seen
