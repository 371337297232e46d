"""The partition reader's handling of records the client cannot read: fetched again, then
handed on in their place to be dead-lettered; broker errors still raise."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from confluent_kafka import KafkaError, KafkaException

from llmhub.ingest.reader import REREAD_ATTEMPTS, PartitionReader, UnreadableRecord


@dataclass
class FakeMessage:
    _topic: str
    _partition: int
    _offset: int
    _value: bytes | None = b"{}"
    _error: KafkaError | None = None

    def error(self) -> KafkaError | None:
        return self._error

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes | None:
        return self._value


@dataclass
class FakeConsumer:
    """Serves partition 0 of topic "t" from ``position``; offset ``bad`` is unreadable for the
    first ``bad_fetches`` fetches of it."""

    bad: int
    bad_fetches: int
    end: int = 6
    position: int = 0
    fetched_bad: int = 0
    seeks: list[int] = field(default_factory=list)

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        out = []
        for offset in range(self.position, self.end):
            if offset == self.bad and self.fetched_bad < self.bad_fetches:
                self.fetched_bad += 1
                out.append(FakeMessage("t", 0, offset, None, KafkaError(KafkaError._BAD_MSG)))
            else:
                out.append(FakeMessage("t", 0, offset))
        self.position = self.end
        return out

    def seek(self, tp: object) -> None:
        self.seeks.append(tp.offset)  # type: ignore[attr-defined]
        self.position = tp.offset  # type: ignore[attr-defined]


def _reader(consumer: FakeConsumer) -> PartitionReader:
    reader = PartitionReader("127.0.0.1:1", "test")
    reader._consumer.close()
    reader._consumer = consumer  # type: ignore[assignment]
    return reader


def _offsets(polled: dict) -> list[int]:
    return [record.offset() for records in polled.values() for record in records]


def test_a_record_unreadable_once_is_fetched_again_and_read() -> None:
    consumer = FakeConsumer(bad=3, bad_fetches=1)
    reader = _reader(consumer)
    first = reader.poll(100, 100)
    # Offsets before the bad one are kept; the partition is re-read from the bad offset.
    assert _offsets(first) == [0, 1, 2] and consumer.seeks == [3]
    second = reader.poll(100, 100)
    assert _offsets(second) == [3, 4, 5]
    assert not any(isinstance(r, UnreadableRecord) for rs in second.values() for r in rs)


def test_a_record_that_stays_unreadable_is_handed_on_in_its_place() -> None:
    consumer = FakeConsumer(bad=2, bad_fetches=100)
    reader = _reader(consumer)
    seen: list = []
    for _ in range(REREAD_ATTEMPTS):
        for records in reader.poll(100, 100).values():
            seen.extend(records)
    assert consumer.seeks == [2] * (REREAD_ATTEMPTS - 1)
    assert [r.offset() for r in seen] == [0, 1, 2, 3, 4, 5]
    unreadable = seen[2]
    assert isinstance(unreadable, UnreadableRecord) and unreadable.value() is None
    assert "_BAD_MSG" in unreadable.reason


def test_a_broker_error_still_stops_the_run() -> None:
    # Not about one record (no offset): the run stops and the next one resumes from the
    # stored offsets.
    class Down(FakeConsumer):
        def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
            return [FakeMessage("t", 0, -1001, None, KafkaError(KafkaError._ALL_BROKERS_DOWN))]

    with pytest.raises(KafkaException):
        _reader(Down(bad=-1, bad_fetches=0)).poll(100, 100)
