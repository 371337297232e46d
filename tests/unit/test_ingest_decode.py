"""Decoding runs of messages into COPY text (llmhub.ingest.decode) and assembling a transaction
from decoded chunks (the day limit, rejections and offsets), without a broker or a database."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg.adapt import Transformer

from llmhub.config import Settings
from llmhub.contract.topics import BY_TOPIC
from llmhub.ingest import engine
from llmhub.ingest.decode import decode_chunk
from llmhub.ingest.engine import Ingestor
from llmhub.ingest.normalize import ErrorClass, Normalizer
from llmhub.ingest.reader import TopicPartition, UnreadableRecord

EventFactory = Callable[..., dict[str, Any]]
TELEMETRY = BY_TOPIC["llm.telemetry"]
SETTINGS = Settings()


@dataclass
class FakeRecord:
    """The part of a librdkafka message the ingester reads."""

    _topic: str
    _partition: int
    _offset: int
    _value: bytes | None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (1, 0)


def _telemetry(event: EventFactory, days_ago: int = 0) -> bytes:
    moment = datetime.now(UTC) - timedelta(days=days_ago, minutes=5)
    return json.dumps(event("telemetry", occurred_at=moment.isoformat())).encode()


def test_rows_are_rendered_in_order_with_rejections_beside_them(event: EventFactory) -> None:
    values = [_telemetry(event), b"{not json", None, _telemetry(event)]
    normalizer = Normalizer(TELEMETRY, SETTINGS)
    chunk = decode_chunk(normalizer, values, 3, [10, 11, 12, 13], datetime.now(UTC))

    assert list(chunk.index) == [0, 3]
    assert [(i, cls) for i, cls, _ in chunk.rejected] == [
        (1, ErrorClass.invalid_json),
        (2, ErrorClass.empty),
    ]
    lines = chunk.text.decode().splitlines(keepends=True)
    assert len(lines) == 2 and chunk.ends[-1] == len(chunk.text)
    assert chunk.text[: chunk.ends[0]].decode() == lines[0]
    # Partition and offset are the last two columns of every raw table.
    # (COPY CSV: neither these numbers, the event id nor the time hold a comma.)
    assert lines[0].rstrip("\n").split(",")[-2:] == ["3", "10"]
    assert lines[1].rstrip("\n").split(",")[-2:] == ["3", "13"]
    # The event time is rendered as ISO-8601 with its offset (in UTC).
    assert lines[0].split(",")[1].strip('"').endswith("+00:00")


def test_a_row_the_renderer_refuses_is_rejected_as_internal(event: EventFactory) -> None:
    # A normaliser bug that puts an unrenderable value in a row must cost one message, not the
    # batch: the renderer's partial output is discarded and the message kept as `internal`.
    class Unrenderable:
        pass

    class BrokenNormalizer:
        def normalize(self, value: bytes | None, partition: int, offset: int, now: datetime):
            row = Normalizer(TELEMETRY, SETTINGS).normalize(value, partition, offset, now)
            return row if offset != 1 else (*row[:-1], Unrenderable())

        def fast_copy_line(self, *args: Any) -> None:
            return None  # every message the general way, through the renderer

        def fast_copy_lines(self, *args: Any) -> None:
            return None

    values = [_telemetry(event) for _ in range(3)]
    chunk = decode_chunk(BrokenNormalizer(), values, 0, [0, 1, 2], datetime.now(UTC), Transformer())
    assert list(chunk.index) == [0, 2]
    assert [(i, cls) for i, cls, _ in chunk.rejected] == [(1, ErrorClass.internal)]
    assert "rendered" in chunk.rejected[0][2]
    assert chunk.text.count(b"\n") == 2


def test_a_batch_from_several_chunks_stops_at_the_day_limit(
    event: EventFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Chunks of one partition are assembled in order: a day beyond the limit in the second
    # chunk cuts the batch there, rejections before the cut stay in it, the rest is returned.
    monkeypatch.setattr(engine, "MAX_DAYS_PER_BATCH", 3)
    ingestor = Ingestor(SETTINGS, topics=["llm.telemetry"])
    topic = SETTINGS.topic("llm.telemetry")
    tp = TopicPartition(topic, 0)
    values = [
        _telemetry(event, 0),
        b"",
        _telemetry(event, 1),
        _telemetry(event, 2),
        b"[]",
        _telemetry(event, 3),  # a fourth day: the cut
        b"",
        _telemetry(event, 0),
    ]
    records = [FakeRecord(topic, 0, 100 + i, v) for i, v in enumerate(values)]
    now = datetime.now(UTC)
    normalizer = ingestor.normalizers[topic]
    chunks = [
        decode_chunk(normalizer, values[:3], 0, [r.offset() for r in records[:3]], now),
        decode_chunk(normalizer, values[3:], 0, [r.offset() for r in records[3:]], now),
    ]
    batch, rest = ingestor._build_batch({tp: records}, {tp: 100}, {tp: chunks}, now)
    rows = batch.tables["llm_requests"]
    # Decoded chunks are assembled as the writer streams them: a stream cut short after the
    # first piece (the server refused the COPY) resumes where it stopped.
    first = bytes(next(rows.stream()))
    assert len(rows.sources) == 2 and not rest and first.count(b"\n") == 2
    resumed = b"".join(rows.stream())
    assert resumed.startswith(first) and resumed.count(b"\n") == 3
    batch.finish()

    assert [s.offset() for s in rows.sources] == [100, 102, 103]
    assert b"".join(rows.text).count(b"\n") == 3 and rows.pending is None
    assert [d.source.offset for d in batch.dead_letters] == [101, 104]
    assert batch.offsets == {(topic, 0): (100, 105)}
    assert [r.offset() for r in rest[tp]] == [105, 106, 107]
    # The rows a fallback needs as values are rebuilt from their messages.
    assert [row[-1] for row in rows.values()] == [100, 102, 103]


def test_an_unreadable_record_is_dead_lettered_with_the_clients_error(
    event: EventFactory,
) -> None:
    ingestor = Ingestor(SETTINGS, topics=["llm.telemetry"])
    topic = SETTINGS.topic("llm.telemetry")
    tp = TopicPartition(topic, 0)
    records = [
        FakeRecord(topic, 0, 5, _telemetry(event)),
        UnreadableRecord(topic, 0, 6, "_BAD_MSG: Local: Bad message format"),
        FakeRecord(topic, 0, 7, _telemetry(event)),
    ]
    batch, rest = ingestor._build_batch({tp: records}, {tp: 5})
    assert not rest and [s.offset() for s in batch.tables["llm_requests"].sources] == [5, 7]
    [dead] = batch.dead_letters
    assert (dead.source.offset, dead.source.value, dead.error_class) == (
        6,
        None,
        ErrorClass.unreadable,
    )
    assert "Bad message" in dead.error
    assert batch.offsets == {(topic, 0): (5, 8)}
