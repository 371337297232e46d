"""Write one micro-batch to TimescaleDB: rows, dead letters and the next offsets, atomically.

The offsets of the messages a batch was read from are stored in the same transaction as the rows
they produced, so after a crash at any instant the database holds either the whole batch and the
offsets past it, or neither, and reading resumes from the stored offsets. The offset update is
guarded by the offset the batch started from: a second ingester that read the same messages
cannot commit them again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import psycopg
from psycopg import errors, sql

from llmhub.ingest.normalize import ErrorClass
from llmhub.ingest.tables import TABLES

log = logging.getLogger(__name__)


class ConcurrentIngestionError(RuntimeError):
    """Another ingester advanced a partition's offset first; this batch was rolled back."""


class Source(Protocol):
    """Where a row or a dead letter came from in Kafka (kafka-python's ConsumerRecord fits)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int | None  # milliseconds since the epoch, as Kafka stores it


@dataclass(frozen=True, slots=True)
class Message:
    """A Kafka message as a plain value (for tests and non-Kafka callers)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int | None = None


def kafka_time(timestamp_ms: int | None) -> datetime | None:
    """The broker timestamp as a datetime; ``None`` when missing, negative or beyond what a
    datetime holds (CreateTime is set by the producer and may be anything)."""
    if timestamp_ms is None or timestamp_ms < 0:
        return None
    try:
        return datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    except (OverflowError, OSError, ValueError, TypeError):
        return None


def is_infrastructure_fault(exc: BaseException, conn: psycopg.Connection | None = None) -> bool:
    """Whether ``exc`` is about the database being unreachable rather than about the data: the
    connection is gone, or the server is shutting down or cannot be reached. Such a fault stops
    the run (the next run resumes from the stored offsets); anything else is retried, then
    narrowed down to the message that causes it."""
    if conn is not None and (conn.closed or conn.broken):
        return True
    if isinstance(exc, psycopg.InterfaceError):
        return True
    sqlstate = getattr(exc, "sqlstate", None) or ""
    # 08: connection exception; 57P: operator intervention (shutdown, cannot connect now);
    # 58: system error (I/O); 53100: disk full.
    return sqlstate.startswith(("08", "57P", "58")) or sqlstate == "53100"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    source: Source
    error_class: str
    error: str


@dataclass
class TableRows:
    """Rows for one raw table with, position for position, the message each came from.

    The rows come either as values (``rows``) or already rendered as COPY CSV by the decoders
    (``text``, the rows in order); then ``rows`` stays empty until a fallback needs the values,
    which ``rebuild(sources)`` makes again.
    """

    rows: list[tuple] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    text: list[bytes | memoryview] = field(default_factory=list)
    rebuild: Callable[[list], list[tuple]] | None = None
    # COPY CSV still being assembled (decoders finishing): ``stream`` sends it as it comes and
    # keeps it in ``text``; ``sources`` is complete only once it is consumed (``finish``).
    pending: Iterator[bytes | memoryview] | None = None

    def __len__(self) -> int:
        return len(self.sources)

    def stream(self) -> Iterator[bytes | memoryview]:
        """The COPY CSV: what was assembled, then the rest as it is assembled. A stream cut
        short (the server refused the COPY) resumes where it stopped on the next call."""
        yield from list(self.text)
        while self.pending is not None:
            try:
                piece = next(self.pending)
            except StopIteration:
                self.pending = None
                return
            self.text.append(piece)
            yield piece

    def finish(self) -> None:
        """Assemble whatever is still pending."""
        for _ in self.stream():
            pass

    def values(self) -> list[tuple]:
        """The rows as values, rebuilt from their messages if they came as COPY CSV."""
        self.finish()
        if len(self.rows) != len(self.sources) and self.rebuild is not None:
            self.rows = self.rebuild(self.sources)
        return self.rows


@dataclass
class Batch:
    """Everything one micro-batch writes, plus the offset range per (topic, partition)."""

    tables: dict[str, TableRows] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    # (topic, partition) -> (offset the batch started from, next offset after the batch)
    offsets: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    # Seconds spent decoding and rendering the rows as COPY CSV (by the decoders, if any), and
    # waiting for the decoders while writing.
    decode_s: float = 0.0
    format_s: float = 0.0
    wait_s: float = 0.0

    def finish(self) -> None:
        """Complete every table still being assembled (see ``TableRows.pending``)."""
        for rows in self.tables.values():
            rows.finish()

    def add_row(self, table: str, row: tuple, source: Source) -> None:
        target = self.tables.setdefault(table, TableRows())
        target.rows.append(row)
        target.sources.append(source)

    @property
    def message_count(self) -> int:
        return sum(end - start for start, end in self.offsets.values())


@dataclass
class WriteResult:
    inserted: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    dead_lettered: int = 0
    # The batch's dead letters plus the rows the database refused (the batch is not modified,
    # so a refused transaction can be retried with the same batch).
    dead_letters: list[DeadLetter] = field(default_factory=list)
    # Seconds spent rendering rows for COPY, sending rows and dead letters (COPY until the server
    # acknowledged it, fallbacks, offsets), and committing.
    format_s: float = 0.0
    copy_s: float = 0.0
    commit_s: float = 0.0


class RawWriter:
    """Writes batches for one consumer group through one psycopg connection."""

    def __init__(
        self,
        conn: psycopg.Connection,
        consumer_group: str,
        as_message: Callable[[Any], Source] = lambda source: source,
    ) -> None:
        self.conn = conn
        self.group = consumer_group
        # Rows keep the client's own record objects (no per-row copy); only the rare
        # dead-letter path converts one into a ``Source``.
        self._as_message = as_message
        self._format_s = 0.0

    def write(self, batch: Batch) -> WriteResult:
        """Write ``batch`` in one transaction; raise ``ConcurrentIngestionError`` if pre-empted."""
        result = WriteResult()
        self._format_s = 0.0
        started = time.perf_counter()
        refused: list[DeadLetter] = []
        with self.conn.transaction():
            for table, rows in batch.tables.items():
                inserted, duplicates, rejected = self._write_table(table, rows)
                result.inserted[table] = inserted
                result.duplicates[table] = duplicates
                refused.extend(rejected)
            # Complete only now: tables being assembled add their dead letters as they stream.
            result.dead_letters = [*batch.dead_letters, *refused]
            result.dead_lettered = self._write_dead_letters(result.dead_letters)
            self._advance_offsets(batch.offsets)
            sent = time.perf_counter()
        result.format_s = self._format_s
        result.copy_s = sent - started - self._format_s
        result.commit_s = time.perf_counter() - sent
        return result

    def _copy(self, table: str, columns: Sequence[str], rows: TableRows) -> None:
        # Rows rendered by the decoders come as CSV, which the server parses for less CPU than
        # text (measured: 11-30% less server CPU, four loads of 300,000 rows). Rows given as
        # values go in text format through psycopg's C row formatter: 3.7 us of CPU per row
        # against 6.2 for csv.writer (measured), and NULL, empty strings and arrays stay
        # distinct.
        rendered = bool(rows.text) or rows.pending is not None
        statement = sql.SQL("copy {} ({}) from stdin{}").format(
            sql.Identifier(*table.split(".")),
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(" (format csv)" if rendered else ""),
        )
        # The formatter is called directly (what ``copy.write_row`` does) so that the time spent
        # rendering rows can be told apart from the time spent sending them.
        started = time.perf_counter()
        sending = 0.0
        with self.conn.cursor().copy(statement) as copy:
            send = copy.write
            if rendered:  # by the decoders: send it
                for text in rows.stream():
                    send(text)
                return
            format_row = copy.formatter.write_row
            for row in rows.rows:
                data = format_row(row)
                if data:
                    sent = time.perf_counter()
                    send(data)
                    sending += time.perf_counter() - sent
            formatted = time.perf_counter()
        self._format_s += formatted - started - sending

    def _write_table(self, table: str, rows: TableRows) -> tuple[int, int, list[DeadLetter]]:
        """Fast path: COPY straight into the hypertable. Producer redeliveries make it fail on
        the event key, and a value PostgreSQL refuses would fail it too; both fall back."""
        spec = TABLES[table]
        try:
            with self.conn.transaction():
                self._copy(spec.qualified_name, spec.columns, rows)
            return len(rows), 0, []
        except errors.UniqueViolation:
            rows.finish()
            try:
                with self.conn.transaction():
                    inserted = self._insert_deduplicated(table, rows)
                return inserted, len(rows) - inserted, []
            except Exception as exc:
                if self._not_about_rows(exc):
                    raise
                log.warning(
                    "%s: batch refused after a redelivery (%s); row by row", table, _describe(exc)
                )
                return self._insert_row_by_row(table, rows)
        except Exception as exc:
            # A value PostgreSQL refuses, or one the row formatter cannot render: find it.
            if self._not_about_rows(exc):
                raise
            log.warning("COPY into %s refused (%s); writing row by row", table, _describe(exc))
            return self._insert_row_by_row(table, rows)

    def _not_about_rows(self, exc: Exception) -> bool:
        """Errors that row-by-row writing cannot resolve: the connection or the server is in
        trouble (the caller retries or stops), or a resource limit of the whole transaction."""
        return isinstance(exc, psycopg.OperationalError) or is_infrastructure_fault(exc, self.conn)

    def _insert_deduplicated(self, table: str, rows: TableRows) -> int:
        spec = TABLES[table]
        stage = f"stage_{table}"
        # Created on every use (cheap when it exists): a savepoint rolled back after creating
        # it would otherwise leave a cached name for a table that no longer exists.
        self.conn.execute(
            sql.SQL(
                "create temp table if not exists {} (like {} including defaults) "
                "on commit delete rows"
            ).format(sql.Identifier(stage), sql.Identifier("raw", table))
        )
        self._copy(stage, spec.columns, rows)
        columns = sql.SQL(", ").join(map(sql.Identifier, spec.columns))
        cursor = self.conn.execute(
            sql.SQL("insert into {} ({cols}) select {cols} from {} on conflict do nothing").format(
                sql.Identifier("raw", table), sql.Identifier(stage), cols=columns
            )
        )
        self.conn.execute(sql.SQL("truncate {}").format(sql.Identifier(stage)))
        return cursor.rowcount

    def _insert_row_by_row(self, table: str, rows: TableRows) -> tuple[int, int, list[DeadLetter]]:
        inserted = duplicates = 0
        rejected: list[DeadLetter] = []
        for outcome in self.insert_each(table, rows):
            if isinstance(outcome, DeadLetter):
                rejected.append(outcome)
            else:
                inserted += outcome
                duplicates += 1 - outcome
        return inserted, duplicates, rejected

    def insert_each(self, table: str, rows: TableRows) -> list[int | DeadLetter]:
        """Insert ``rows`` one by one, each in a savepoint: per row 1 (stored), 0 (already
        stored: same event key) or the dead letter saying why the database refused it."""
        spec = TABLES[table]
        statement = sql.SQL("insert into {} ({}) values ({}) on conflict do nothing").format(
            sql.Identifier("raw", table),
            sql.SQL(", ").join(map(sql.Identifier, spec.columns)),
            sql.SQL(", ").join(sql.Placeholder() * len(spec.columns)),
        )
        outcomes: list[int | DeadLetter] = []
        for row, source in zip(rows.values(), rows.sources, strict=True):
            try:
                with self.conn.transaction():
                    outcomes.append(self.conn.execute(statement, row).rowcount)
            except Exception as exc:
                if self._not_about_rows(exc):
                    raise
                if isinstance(exc, psycopg.Error):
                    error_class = ErrorClass.database
                    message = f"database refused the row ({_describe(exc)})"
                else:  # the row formatter or the adapter raised: a bug, kept with the message
                    error_class = ErrorClass.internal
                    message = f"row could not be written: {type(exc).__name__}: {exc}"
                outcomes.append(DeadLetter(self._as_message(source), error_class, message[:1000]))
        return outcomes

    def _write_dead_letters(self, dead_letters: Sequence[DeadLetter]) -> int:
        if not dead_letters:
            return 0
        with self.conn.cursor() as cursor:
            cursor.executemany(
                """
                insert into raw.dead_letter (topic, kafka_partition, kafka_offset, message_key,
                    raw_value, error_class, error, kafka_timestamp)
                values (%s, %s, %s, %s, %s, %s, %s, %s)
                on conflict (topic, kafka_partition, kafka_offset) do nothing
                """,
                [
                    (
                        d.source.topic,
                        d.source.partition,
                        d.source.offset,
                        d.source.key,
                        d.source.value,
                        str(d.error_class),
                        d.error,
                        kafka_time(d.source.timestamp),
                    )
                    for d in dead_letters
                ],
            )
        return len(dead_letters)

    def _advance_offsets(self, offsets: dict[tuple[str, int], tuple[int, int]]) -> None:
        for (topic, partition), (start, end) in offsets.items():
            cursor = self.conn.execute(
                """
                insert into raw.kafka_offsets as o (consumer_group, topic, kafka_partition,
                    next_offset)
                values (%(group)s, %(topic)s, %(partition)s, %(end)s)
                on conflict (consumer_group, topic, kafka_partition) do update
                    set next_offset = excluded.next_offset, updated_at = now()
                    where o.next_offset = %(start)s
                """,
                {
                    "group": self.group,
                    "topic": topic,
                    "partition": partition,
                    "start": start,
                    "end": end,
                },
            )
            if cursor.rowcount != 1:
                raise ConcurrentIngestionError(
                    f"{topic}[{partition}] moved past offset {start} under another ingester; "
                    "the batch was rolled back"
                )


def _describe(exc: Exception) -> str:
    if isinstance(exc, psycopg.Error):
        primary = exc.diag.message_primary if exc.diag else None
        return f"{exc.sqlstate or type(exc).__name__}: {primary or exc}"
    return f"{type(exc).__name__}: {exc}"


def stored_offsets(
    conn: psycopg.Connection, group: str, partitions: Sequence[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    """Next offset to read per (topic, partition) as committed in the database."""
    rows = conn.execute(
        "select topic, kafka_partition, next_offset from raw.kafka_offsets "
        "where consumer_group = %s",
        (group,),
    ).fetchall()
    wanted = set(partitions)
    return {(t, p): o for t, p, o in rows if (t, p) in wanted}
