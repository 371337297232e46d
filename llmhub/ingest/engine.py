"""The micro-batch ingester: Kafka partitions in, raw hypertables out, exactly once.

One run claims partitions (a PostgreSQL advisory lock per topic-partition, held for the run, so
two ingesters never read the same partition at once), seeks each to the offset stored in the
database, and loops: poll a bounded batch, normalise, write rows + dead letters + next offsets in
one transaction. Workers on several machines split the partitions with ``worker_index`` /
``worker_count``; the locks make a mis-configured split safe, and the guarded offset update makes
even a lock-less second reader unable to store a message twice.

The ``assign()`` API is used instead of consumer-group ``subscribe()``: the offsets live in the
database, not in Kafka, and group joins cost seconds per micro-batch.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from llmhub.config import Settings
from llmhub.contract.topics import BY_TOPIC, TOPICS
from llmhub.db import connect
from llmhub.ingest.decode import DecodedChunk, DecoderPool, decode_chunk
from llmhub.ingest.normalize import ErrorClass, Normalizer
from llmhub.ingest.reader import PartitionReader, TopicPartition, UnreadableRecord, as_message
from llmhub.ingest.writer import (
    Batch,
    ConcurrentIngestionError,
    DeadLetter,
    RawWriter,
    TableRows,
    WriteResult,
    is_infrastructure_fault,
    stored_offsets,
)

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS = 1000
DRAIN_POLL_TIMEOUT_MS = 200
MAX_DRAIN_POLLS = 100
ACCUMULATE_S = 0.5
ACCUMULATE_POLL_MS = 50
# The first batch of a run: small, so that the first COPY starts as soon as the first fetch
# response arrives (8,000 messages in 0.13 s against 50,000 in 0.64 s from the dev broker,
# measured) and the rest of the pipeline fills behind it; the next ones double up to
# ``batch_max_records`` (a 50,000-message fetch after an 8,000-message write left the server
# idle for 0.35 s, measured).
FIRST_BATCH_RECORDS = 8_000
# Days (1-day chunks of a raw hypertable) one transaction may write per table. Each chunk takes
# a few locks (the chunk and its indexes) until commit: events spread over years in one batch
# would exhaust max_locks_per_transaction and refuse the whole transaction. A batch stops at
# the first message that would open a day beyond this; the rest go in the next transaction.
MAX_DAYS_PER_BATCH = 32
# A transaction the database refused for no single row's sake is retried this many times
# (exponential backoff) before the batch is split in halves to find the message behind it.
WRITE_ATTEMPTS = 3
RETRY_WAIT_S = (0.2, 5.0)
STAGES = ("fetch", "decode", "format", "wait", "copy", "commit")
# The garbage collector's first threshold during a run. A run holds up to two batches of the
# client's message objects, and with the default (700 allocations) the collector spent 1.1 of
# the reading process's 4.2 CPU-seconds per 500,000 messages scanning them (measured with
# gc.callbacks); with this threshold, and the objects alive at the start frozen, 0.3 of 3.3.
# The messages form no reference cycles: reference counting frees them either way.
GC_THRESHOLD = (50_000, 20, 100)

Polled = dict[TopicPartition, list]
# Per polled partition, its run decoded in order (chunks, or futures of a decoder pool).
Decoded = dict[TopicPartition, list[DecodedChunk] | list[Future[DecodedChunk]]]


class DecoderFailedError(RuntimeError):
    """A decoder process died or failed (decoding never raises for a message's content): the
    run stops with the batch rolled back, like any fault that is not about the data."""


class OffsetsAheadOfBrokerError(RuntimeError):
    """The database says we read past the end of a partition: the topic was recreated."""


@dataclass
class IngestReport:
    """What one run did, per raw table and per topic-partition."""

    rows_written: dict[str, int] = field(default_factory=dict)
    duplicates_skipped: dict[str, int] = field(default_factory=dict)
    dead_lettered: dict[str, int] = field(default_factory=dict)
    # (topic, error class) -> dead letters: what the Prometheus metrics break down by.
    dead_letter_classes: dict[tuple[str, str], int] = field(default_factory=dict)
    messages: int = 0
    batches: int = 0
    duration_s: float = 0.0
    partitions: list[str] = field(default_factory=list)
    lag: dict[str, int] = field(default_factory=dict)
    skipped_partitions: list[str] = field(default_factory=list)
    # Seconds per stage, summed over batches: fetch (broker polls), decode (JSON, contract,
    # normalisation into row tuples) and format (rendering rows as COPY CSV), both summed over
    # the decoder processes when there are any, wait (the writer waiting for the decoders), copy
    # (sending rows until the server acknowledged the COPY, fallbacks, dead letters, offsets),
    # commit.
    stage_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    # Batches the database refused as a whole, retried or split to isolate a message.
    batches_split: int = 0
    # Partition groups written in parallel, each over its own connection.
    lanes: int = 1

    def add_stage(self, stage: str, seconds: float) -> None:
        self.stage_s[stage] = self.stage_s.get(stage, 0.0) + seconds

    def absorb(self, other: IngestReport) -> None:
        """Add what ``other`` (a lane of the same run) counted; partitions and duration are
        the run's own."""
        for mine, theirs in (
            (self.rows_written, other.rows_written),
            (self.duplicates_skipped, other.duplicates_skipped),
            (self.dead_lettered, other.dead_lettered),
            (self.dead_letter_classes, other.dead_letter_classes),
            (self.stage_s, other.stage_s),
        ):
            for key, value in theirs.items():
                mine[key] = mine.get(key, 0) + value  # type: ignore[index, call-overload]
        self.lag.update(other.lag)
        self.messages += other.messages
        self.batches += other.batches
        self.batches_split += other.batches_split

    @property
    def events_per_s(self) -> float:
        return self.messages / self.duration_s if self.duration_s > 0 else 0.0

    def lag_by_topic(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for key, value in self.lag.items():
            topic = key.rsplit("[", 1)[0]
            totals[topic] = totals.get(topic, 0) + value
        return totals


def _tp_name(tp: TopicPartition) -> str:
    return f"{tp.topic}[{tp.partition}]"


def _lock_key(group: str, tp: TopicPartition) -> str:
    return f"llmhub-ingest:{group}:{tp.topic}:{tp.partition}"


def make_reader(settings: Settings, client_id: str = "llmhub-ingest") -> PartitionReader:
    return PartitionReader(settings.kafka_bootstrap, client_id)


class Ingestor:
    """Reads the contract's topics into the raw tables for one consumer group.

    Args:
        settings: connection strings and limits.
        topics: topics to read (default: all five).
        worker_index / worker_count: this worker's share of the partitions.
        batch_max_records: messages per transaction (bounds memory).
        decoders: decoder processes (0: decode in this process). With one or more, the next
            batch is decoded while the current one is written, and the CPU of decoding is spread
            over the cores whatever the partitions' balance.
        pool: a decoder pool owned by the caller (kept open after the run), instead of
            ``decoders``: a long-running ingester starts its processes once.
        lanes: the claimed partitions are split into this many lanes, balanced by backlog, each
            with its own consumer, database connection and transactions (a partition's
            messages and its offsets stay in one lane, so every commit is still atomic for the
            partitions it covers). The server parses COPY in one backend process per
            connection: with one lane, that process bounds the run on a machine with cores to
            spare. Each lane's batches hold ``batch_max_records / lanes`` messages, so memory
            stays within the same bound. A run limited by ``max_batches`` uses one lane.
    """

    def __init__(
        self,
        settings: Settings,
        topics: Sequence[str] | None = None,
        worker_index: int = 0,
        worker_count: int = 1,
        batch_max_records: int | None = None,
        decoders: int = 0,
        pool: DecoderPool | None = None,
        lanes: int = 1,
    ) -> None:
        if not 0 <= worker_index < worker_count:
            raise ValueError(f"worker_index {worker_index} is not in [0, {worker_count})")
        self.settings = settings
        names = self.topic_names(topics)
        # Physical topic names (with the configured prefix) from here on.
        self.topics = [settings.topic(t) for t in names]
        self.worker_index = worker_index
        self.worker_count = worker_count
        self.batch_max_records = batch_max_records or settings.batch_max_records
        self.contract_topics = names
        self.normalizers = {settings.topic(t): Normalizer(BY_TOPIC[t], settings) for t in names}
        self.decoders = max(0, decoders)
        self._own_pool = pool is None
        self._pool: DecoderPool | None = pool
        self.lanes = max(1, lanes)

    @staticmethod
    def topic_names(topics: Sequence[str] | None) -> list[str]:
        """The contract topics to read (default: all); unknown names raise ``ValueError``."""
        names = list(topics) if topics else [spec.topic for spec in TOPICS]
        unknown = [t for t in names if t not in BY_TOPIC]
        if unknown:
            raise ValueError(f"unknown topics {unknown}; the contract has {sorted(BY_TOPIC)}")
        return names

    def run(
        self,
        until_caught_up: bool = True,
        max_batches: int | None = None,
        on_batch: Callable[[IngestReport], None] | None = None,
    ) -> IngestReport:
        """Ingest until caught up with the end offsets seen at start, or ``max_batches``."""
        with _fewer_collections():
            return self._run(until_caught_up, max_batches, on_batch)

    def _run(
        self,
        until_caught_up: bool,
        max_batches: int | None,
        on_batch: Callable[[IngestReport], None] | None,
    ) -> IngestReport:
        started = time.monotonic()
        report = IngestReport()
        # The pool first: it forks while no client thread runs yet.
        if self.decoders and self._pool is None:
            self._pool = DecoderPool(self.settings, self.contract_topics, self.decoders)
        try:
            consumer = make_reader(self.settings)
        except BaseException:
            self._close_pool()
            raise
        try:
            with connect(self.settings, autocommit=True) as conn:
                claimed, skipped = self._claim(conn, consumer)
                report.partitions = [_tp_name(tp) for tp in claimed]
                report.skipped_partitions = [_tp_name(tp) for tp in skipped]
                lanes = self._lanes(conn, consumer, claimed) if max_batches is None else []
                if len(lanes) > 1:
                    report.lanes = len(lanes)
                    self._run_lanes(conn, consumer, lanes, report, until_caught_up, on_batch)
                elif claimed:
                    self._consume(
                        conn, consumer, claimed, report, until_caught_up, max_batches, on_batch
                    )
                    report.lag = self._lag(conn, consumer, claimed)
                if claimed:
                    # Releasing explicitly keeps the lock scope obvious; closing would too.
                    conn.execute("select pg_advisory_unlock_all()")
        finally:
            consumer.close()
            self._close_pool()
        report.duration_s = time.monotonic() - started
        return report

    def _lag(
        self, conn: psycopg.Connection, consumer: PartitionReader, tps: list[TopicPartition]
    ) -> dict[str, int]:
        """Messages left per partition after a run (end offsets as last fetched)."""
        marks = consumer.watermarks(tps, cached=True)
        unknown = [tp for tp, (_, high) in marks.items() if high < 0]
        if unknown:  # never fetched in this run: ask the broker
            marks.update(consumer.watermarks(unknown))
        end = {tp: high for tp, (_, high) in marks.items()}
        positions = stored_offsets(
            conn, self.settings.consumer_group, [(tp.topic, tp.partition) for tp in tps]
        )
        return {
            _tp_name(tp): max(0, end[tp] - positions.get((tp.topic, tp.partition), 0)) for tp in tps
        }

    def _lanes(
        self, conn: psycopg.Connection, consumer: PartitionReader, claimed: list[TopicPartition]
    ) -> list[list[TopicPartition]]:
        """The claimed partitions in at most ``lanes`` groups of about equal backlog (largest
        backlog first, each to the lightest lane): a keyed topic is rarely balanced. A backlog
        of one batch or less stays in one lane."""
        count = min(self.lanes, len(claimed))
        if count <= 1:
            return [claimed]
        marks = consumer.watermarks(claimed)
        stored = stored_offsets(
            conn, self.settings.consumer_group, [(tp.topic, tp.partition) for tp in claimed]
        )
        backlog = {
            tp: max(0, high - stored.get((tp.topic, tp.partition), low))
            for tp, (low, high) in marks.items()
        }
        if sum(backlog.values()) <= self.batch_max_records:  # one batch: nothing to share
            return [claimed]
        return balance_lanes(backlog, count)

    def _run_lanes(
        self,
        conn: psycopg.Connection,
        consumer: PartitionReader,
        lanes: list[list[TopicPartition]],
        report: IngestReport,
        until_caught_up: bool,
        on_batch: Callable[[IngestReport], None] | None,
    ) -> None:
        """Ingest each lane in its own thread (the first in this one), with its own consumer
        and connection; ``on_batch`` sees the run's totals. A lane that fails stops the others
        after their current batch, and its exception is raised once they have."""
        reports = [IngestReport() for _ in lanes]
        lane_batch = -(-self.batch_max_records // len(lanes))
        lock = threading.Lock()
        stop = threading.Event()

        def progress(_: IngestReport) -> None:  # called with ``lock`` held
            if on_batch is not None:
                totals = IngestReport(partitions=report.partitions)
                for lane_report in reports:
                    totals.absorb(lane_report)
                on_batch(totals)

        def ingest(k: int, lane_conn: psycopg.Connection, reader: PartitionReader) -> None:
            self._consume(
                lane_conn, reader, lanes[k], reports[k], until_caught_up, None,
                progress, lock, stop, lane_batch,
            )  # fmt: skip
            reports[k].lag = self._lag(lane_conn, reader, lanes[k])

        def lane(k: int) -> None:
            """Lane 0 uses the run's consumer and connection, the others their own."""
            try:
                if k == 0:
                    ingest(0, conn, consumer)
                    return
                reader = make_reader(self.settings)
                try:
                    with connect(self.settings, autocommit=True) as lane_conn:
                        ingest(k, lane_conn, reader)
                finally:
                    reader.close()
            except BaseException:
                stop.set()
                raise

        with ThreadPoolExecutor(len(lanes) - 1, thread_name_prefix="llmhub-lane") as threads:
            others = [threads.submit(lane, k) for k in range(1, len(lanes))]
            try:
                lane(0)
            finally:
                errors = [f.exception() for f in others]  # waits for every lane
        for lane_report in reports:
            report.absorb(lane_report)
        for error in errors:
            if error is not None:
                raise error

    def _close_pool(self) -> None:
        if self._pool is not None and self._own_pool:
            self._pool.close()
            self._pool = None

    def _claim(
        self, conn: psycopg.Connection, consumer: PartitionReader
    ) -> tuple[list[TopicPartition], list[TopicPartition]]:
        """This worker's share of the partitions: (locked for this run, held by another)."""
        every: list[TopicPartition] = []
        for topic in self.topics:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                log.warning(
                    "topic %s does not exist on %s; skipped", topic, self.settings.kafka_bootstrap
                )
                continue
            every.extend(TopicPartition(topic, p) for p in sorted(partitions))
        mine = [tp for i, tp in enumerate(every) if i % self.worker_count == self.worker_index]
        claimed, skipped = [], []
        for tp in mine:
            locked = conn.execute(
                "select pg_try_advisory_lock(hashtextextended(%s, 0))",
                (_lock_key(self.settings.consumer_group, tp),),
            ).fetchone()
            if locked and locked[0]:
                claimed.append(tp)
            else:
                log.info("%s is being ingested by another worker; skipped", _tp_name(tp))
                skipped.append(tp)
        return claimed, skipped

    def _seek(
        self, conn: psycopg.Connection, consumer: PartitionReader, claimed: list[TopicPartition]
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        """Assign the claimed partitions at their stored offsets; return positions and ends."""
        watermarks = consumer.watermarks(claimed)
        beginning = {tp: low for tp, (low, _) in watermarks.items()}
        end = {tp: high for tp, (_, high) in watermarks.items()}
        stored = stored_offsets(
            conn, self.settings.consumer_group, [(tp.topic, tp.partition) for tp in claimed]
        )
        positions: dict[TopicPartition, int] = {}
        for tp in claimed:
            position = stored.get((tp.topic, tp.partition), beginning[tp])
            if position > end[tp] and not self._offset_exists(tp, position - 1):
                raise OffsetsAheadOfBrokerError(
                    f"{_tp_name(tp)}: stored offset {position} is past the broker's end offset "
                    f"{end[tp]}; the topic was recreated or the broker lost data. Reset with "
                    "`llmhub offsets reset` once you have checked what happened."
                )
            if position < beginning[tp]:
                log.error(
                    "%s: offsets %d..%d were deleted by the broker before they were ingested",
                    _tp_name(tp),
                    position,
                    beginning[tp] - 1,
                )
                position = beginning[tp]
            positions[tp] = position
        consumer.assign_at(positions)
        return positions, end

    def _offset_exists(self, tp: TopicPartition, offset: int) -> bool:
        """Whether the broker still serves ``offset`` of ``tp``.

        Some Kafka-protocol brokers (Tansu 0.6) answer ListOffsets(latest) with the base offset
        of the last record batch rather than the log end, so a stored offset past the listed end
        is checked by fetching the message before it.
        """
        probe = make_reader(self.settings, "llmhub-offset-probe")
        try:
            probe.assign_at({tp: offset})
            records = probe.poll(timeout_ms=DRAIN_POLL_TIMEOUT_MS * 10, max_records=1)
            return any(r.offset() == offset for batch in records.values() for r in batch)
        finally:
            probe.close()

    def _consume(
        self,
        conn: psycopg.Connection,
        consumer: PartitionReader,
        claimed: list[TopicPartition],
        report: IngestReport,
        until_caught_up: bool,
        max_batches: int | None,
        on_batch: Callable[[IngestReport], None] | None,
        lock: AbstractContextManager | None = None,
        stop: threading.Event | None = None,
        batch_records: int | None = None,
    ) -> None:
        positions, targets = self._seek(conn, consumer, claimed)
        writer = RawWriter(conn, self.settings.consumer_group, as_message)
        guard = lock or nullcontext()

        def account(batch: Batch, result: WriteResult) -> None:
            with guard:
                count(batch, result)

        def count(batch: Batch, result: WriteResult) -> None:
            report.batches += 1
            report.messages += batch.message_count
            report.add_stage("decode", batch.decode_s)
            report.add_stage("format", batch.format_s + result.format_s)
            report.add_stage("wait", batch.wait_s)
            report.add_stage("copy", result.copy_s - batch.wait_s)
            report.add_stage("commit", result.commit_s)
            for table, count in result.inserted.items():
                report.rows_written[table] = report.rows_written.get(table, 0) + count
            for table, count in result.duplicates.items():
                report.duplicates_skipped[table] = report.duplicates_skipped.get(table, 0) + count
            for dead in result.dead_letters:
                topic = dead.source.topic
                report.dead_lettered[topic] = report.dead_lettered.get(topic, 0) + 1
                key = (topic, dead.error_class)
                report.dead_letter_classes[key] = report.dead_letter_classes.get(key, 0) + 1
            if on_batch is not None:
                on_batch(report)

        # A pipeline: while this thread writes batch N (the server parses COPY rows as they
        # stream in, as the decoders finish them), a fetch thread polls batch N+1 and hands it
        # to the decoders. Batch N is written as soon as it is fetched, not after N+1: the
        # decoders outpace the server several times over, and waiting for a second fetch
        # before the first COPY left both cores idle at the start of a run (about 0.8 s per
        # 50,000 messages, measured). Offsets stay in order: batches are written one after
        # the other, each with the offsets it read, in one transaction. Batches grow from
        # FIRST_BATCH_RECORDS, doubling, so that each fetch is ready before the write before
        # it ends. Past the targets, a drain poll (below) is fetched during the last write;
        # nothing is fetched past ``max_batches``.
        fetched = dict(positions)
        polls = 0
        drain_polls = 0

        cap = batch_records or self.batch_max_records

        def limit(polls: int) -> int:
            return min(cap, FIRST_BATCH_RECORDS << min(polls, 16))

        def fetch(
            reached: bool, limit: int | None = None
        ) -> tuple[Polled, tuple[Polled, Decoded, datetime] | None]:
            polled = self._poll_batch(
                consumer, DRAIN_POLL_TIMEOUT_MS if reached else POLL_TIMEOUT_MS, limit
            )
            if not polled:
                return polled, None
            now = datetime.now(UTC)
            return polled, (polled, self._decode(polled, now), now)

        # Leaving the block waits for a fetch in flight: the consumer outlives every poll.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmhub-fetch") as fetcher:
            ahead: Future | None = None
            while (max_batches is None or polls < max_batches) and not (stop and stop.is_set()):
                reached = all(fetched[tp] >= targets[tp] for tp in claimed)
                if until_caught_up and reached and ahead is None:
                    # Past the targets, short drain polls pick up a tail the listed end offsets
                    # under-report (see _offset_exists), until one comes back empty; bounded so
                    # a producer that never pauses cannot keep the run going.
                    if drain_polls >= MAX_DRAIN_POLLS:
                        break
                    drain_polls += 1
                fetch_started = time.perf_counter()
                polled, submitted = (ahead or fetcher.submit(fetch, reached, limit(polls))).result()
                ahead = None
                report.add_stage("fetch", time.perf_counter() - fetch_started)
                if polled:
                    polls += 1
                    for tp, records in polled.items():
                        fetched[tp] = records[-1].offset() + 1
                    more = not all(fetched[tp] >= targets[tp] for tp in claimed)
                    draining = until_caught_up and not more
                    if (max_batches is None or polls < max_batches) and not (
                        draining and drain_polls >= MAX_DRAIN_POLLS
                    ):
                        drain_polls += draining
                        ahead = fetcher.submit(fetch, not more, limit(polls))
                if submitted is not None:
                    self._write_all(writer, submitted, positions, report, account)
                if not polled and (not until_caught_up or reached):
                    break

    def _decode(self, polled: Polled, now: datetime) -> Decoded:
        """Start decoding ``polled`` (in the decoder pool) or decode it here."""
        decoded: Decoded = {}
        for tp, records in polled.items():
            values = [record.value() for record in records]
            offsets = [record.offset() for record in records]
            if self._pool is not None:
                decoded[tp] = self._pool.submit(tp.topic, tp.partition, offsets, values, now)
            else:
                normalizer = self.normalizers[tp.topic]
                decoded[tp] = [decode_chunk(normalizer, values, tp.partition, offsets, now)]
        return decoded

    def _write_all(
        self,
        writer: RawWriter,
        inflight: tuple[Polled, Decoded, datetime],
        positions: dict[TopicPartition, int],
        report: IngestReport,
        account: Callable[[Batch, WriteResult], None],
    ) -> None:
        """Write a polled batch, and the rest a transaction's day limit left, in order."""
        polled, decoded, now = inflight
        rest = self._write_polled(writer, polled, positions, report, account, decoded, now)
        while rest:  # the rest of a poll cut short by MAX_DAYS_PER_BATCH
            rest = self._write_polled(writer, rest, positions, report, account)

    def _write_polled(
        self,
        writer: RawWriter,
        polled: Polled,
        positions: dict[TopicPartition, int],
        report: IngestReport,
        account: Callable[[Batch, WriteResult], None],
        decoded: Decoded | None = None,
        now: datetime | None = None,
    ) -> Polled:
        """Write what was polled (up to MAX_DAYS_PER_BATCH days per table) in one transaction,
        or, if the database refuses it as a whole, in smaller ones; return the part left for
        the next transaction."""
        batch, rest = self._build_batch(polled, positions, decoded, now)
        try:
            result = self._retrying(writer, batch)
        except Exception as exc:
            if not self._is_about_data(exc, writer):
                raise
            batch.finish()  # the rest is known once every row was assembled
            report.batches_split += 1
            taken = _without(polled, rest)
            log.warning(
                "the database refused a batch of %d messages as a whole after %d attempts (%s); "
                "splitting it to isolate the message behind it",
                _count(taken),
                WRITE_ATTEMPTS,
                exc,
            )
            self._bisect(writer, taken, positions, report, account)
            return rest
        account(batch, result)
        self._advance(positions, batch)
        return rest

    def _bisect(
        self,
        writer: RawWriter,
        polled: Polled,
        positions: dict[TopicPartition, int],
        report: IngestReport,
        account: Callable[[Batch, WriteResult], None],
    ) -> None:
        """Write ``polled`` in two halves (in offset order per partition), recursively, until
        the one message the database refuses is alone; that message is dead-lettered."""
        flat = [(tp, record) for tp, records in polled.items() for record in records]
        if len(flat) == 1:
            tp, record = flat[0]
            try:
                batch, _ = self._build_batch(polled, positions)
                self._write_or_raise(writer, batch, positions, account, attempts=WRITE_ATTEMPTS)
            except Exception as exc:
                if not self._is_about_data(exc, writer):
                    raise
                error_class = (
                    ErrorClass.database if isinstance(exc, psycopg.Error) else ErrorClass.internal
                )
                batch = Batch()
                batch.dead_letters.append(
                    DeadLetter(
                        as_message(record),
                        error_class,
                        f"the database refused the transaction holding only this message "
                        f"({type(exc).__name__}: {exc})"[:1000],
                    )
                )
                batch.offsets[(tp.topic, tp.partition)] = (positions[tp], record.offset() + 1)
                # If even the dead letter cannot be written, the database itself is the problem.
                self._write_or_raise(writer, batch, positions, account, attempts=WRITE_ATTEMPTS)
            return
        half = len(flat) // 2
        for part in (flat[:half], flat[half:]):
            sub: Polled = {}
            for tp, record in part:
                sub.setdefault(tp, []).append(record)
            while sub:
                batch, rest = self._build_batch(sub, positions)
                try:
                    self._write_or_raise(writer, batch, positions, account, attempts=1)
                except Exception as exc:
                    if not self._is_about_data(exc, writer):
                        raise
                    self._bisect(writer, _without(sub, rest), positions, report, account)
                sub = rest

    def _write_or_raise(
        self,
        writer: RawWriter,
        batch: Batch,
        positions: dict[TopicPartition, int],
        account: Callable[[Batch, WriteResult], None],
        attempts: int,
    ) -> None:
        result = self._retrying(writer, batch, attempts)
        account(batch, result)
        self._advance(positions, batch)

    @staticmethod
    def _advance(positions: dict[TopicPartition, int], batch: Batch) -> None:
        for (topic, partition), (_, end) in batch.offsets.items():
            positions[TopicPartition(topic, partition)] = end

    @staticmethod
    def _is_about_data(exc: BaseException, writer: RawWriter) -> bool:
        """A refusal worth narrowing down: not the database going away, not a second ingester."""
        return not isinstance(
            exc, ConcurrentIngestionError | DecoderFailedError
        ) and not is_infrastructure_fault(exc, writer.conn)

    def _retrying(
        self, writer: RawWriter, batch: Batch, attempts: int = WRITE_ATTEMPTS
    ) -> WriteResult:
        """Write ``batch`` (one transaction), retrying refusals that may be transient (a
        deadlock, a lock or memory limit) with exponential backoff."""
        retrying = Retrying(
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=RETRY_WAIT_S[0], max=RETRY_WAIT_S[1]),
            retry=retry_if_exception(
                lambda exc: isinstance(exc, Exception) and self._is_about_data(exc, writer)
            ),
            reraise=True,
        )
        return retrying(writer.write, batch)

    def _poll_batch(
        self, consumer: PartitionReader, timeout_ms: int, limit: int | None = None
    ) -> dict:
        """Poll until ``limit`` (default ``batch_max_records``) or a short time budget: one
        fetch response holds a few thousand messages, and fewer, larger transactions cost less
        per message."""
        limit = limit or self.batch_max_records
        polled = consumer.poll(timeout_ms=timeout_ms, max_records=limit)
        count = sum(len(records) for records in polled.values())
        deadline = time.monotonic() + ACCUMULATE_S
        while polled and count < limit and time.monotonic() < deadline:
            more = consumer.poll(timeout_ms=ACCUMULATE_POLL_MS, max_records=limit - count)
            if not more:
                break
            for tp, records in more.items():
                polled.setdefault(tp, []).extend(records)
                count += len(records)
        return polled

    def _build_batch(
        self,
        polled: Polled,
        positions: dict[TopicPartition, int],
        decoded: Decoded | None = None,
        now: datetime | None = None,
    ) -> tuple[Batch, Polled]:
        """Assemble ``polled`` into one batch; stop at the first message that would write a day
        beyond MAX_DAYS_PER_BATCH into its table and return, per table, the messages from there
        on.

        Without ``decoded``, ``polled`` is decoded here and the batch is complete on return.
        With it (the decoder pool's futures), each table's rows are assembled while the writer
        streams them: the COPY starts with the first decoded chunk instead of the last, and the
        batch (sources, dead letters, offsets) and the returned rest are complete once the
        writer has consumed the rows, or after ``batch.finish()``.
        """
        lazy = decoded is not None
        if decoded is None:
            now = datetime.now(UTC)
            decoded = self._decode(polled, now)
        assert now is not None
        batch = Batch()
        rest: Polled = {}
        by_table: dict[str, list[TopicPartition]] = {}
        for tp, records in polled.items():
            if records:
                by_table.setdefault(self.normalizers[tp.topic].table.name, []).append(tp)
        for table, tps in by_table.items():
            normalizer = self.normalizers[tps[0].topic]
            target = batch.tables[table] = TableRows(rebuild=_rebuilder(normalizer, now))
            target.pending = self._assemble(batch, target, tps, polled, decoded, positions, rest)
        if not lazy:
            batch.finish()
        return batch, rest

    def _assemble(
        self,
        batch: Batch,
        target: TableRows,
        tps: list[TopicPartition],
        polled: Polled,
        decoded: Decoded,
        positions: dict[TopicPartition, int],
        rest: Polled,
    ) -> Iterator[memoryview]:
        """Yield the COPY CSV of one table's partitions chunk by chunk, in offset order, while
        adding their sources, dead letters and offsets to the batch; after a cut, the rest of
        the table's messages go to ``rest``."""
        seen: set[int] = set()
        for n, tp in enumerate(tps):
            records = polled[tp]
            if rest:  # a partition before it was cut: this table takes no more
                rest[tp] = records
                continue
            base = 0
            cut = len(records)
            for chunk in decoded[tp]:
                if isinstance(chunk, Future):
                    waited = time.perf_counter()
                    try:
                        chunk = chunk.result()
                    except Exception as exc:  # a decoder died: not about any message
                        raise DecoderFailedError(f"a decoder process failed: {exc!r}") from exc
                    batch.wait_s += time.perf_counter() - waited
                batch.decode_s += chunk.decode_s
                batch.format_s += chunk.format_s
                count = len(chunk.index) + len(chunk.rejected)  # every message is one
                taken = len(chunk.index)
                if not seen.issuperset(chunk.days):
                    taken = _rows_within_days(chunk.days, seen)
                    if taken < len(chunk.index):
                        cut = base + chunk.index[taken]
                if taken == count:  # every message a row (the common case): a slice
                    target.sources.extend(records[base : base + taken])
                else:
                    target.sources.extend(records[base + i] for i in chunk.index[:taken])
                for i, error_class, error in chunk.rejected:
                    if base + i >= cut:
                        break
                    record = records[base + i]
                    if type(record) is UnreadableRecord:  # no value: the client's error says why
                        error_class, error = ErrorClass.unreadable, record.reason
                    batch.dead_letters.append(DeadLetter(as_message(record), error_class, error))
                text_end = chunk.end(taken)
                if text_end:
                    yield memoryview(chunk.text)[:text_end]
                if cut < len(records):
                    break
                base += count
            if cut:
                batch.offsets[(tp.topic, tp.partition)] = (
                    positions[tp],
                    records[cut - 1].offset() + 1,
                )
            if cut < len(records):
                rest[tp] = records[cut:]
                for later in tps[n + 1 :]:
                    rest[later] = polled[later]
                return


_gc_lock = threading.Lock()
_gc_runs = 0
_gc_saved: tuple[int, ...] = ()


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """``GC_THRESHOLD`` and the objects alive at the start frozen (out of the collector's
    scans), for as long as any run of this process lasts; the settings before come back after
    the last."""
    global _gc_runs, _gc_saved
    with _gc_lock:
        if _gc_runs == 0:
            _gc_saved = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(*GC_THRESHOLD)
        _gc_runs += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_runs -= 1
            if _gc_runs == 0:
                gc.set_threshold(*_gc_saved)
                gc.unfreeze()


def balance_lanes(backlog: dict[TopicPartition, int], count: int) -> list[list[TopicPartition]]:
    """Partitions in at most ``count`` groups of about equal backlog: largest backlog first,
    each to the lightest group (ties to the lowest partition), groups sorted, empty ones
    dropped."""
    groups: list[list[TopicPartition]] = [[] for _ in range(max(1, count))]
    loads = [0] * len(groups)
    for tp in sorted(backlog, key=lambda tp: (-backlog[tp], tp)):
        lightest = loads.index(min(loads))
        groups[lightest].append(tp)
        loads[lightest] += backlog[tp]
    return [sorted(group) for group in groups if group]


def _rows_within_days(days: Sequence[int], seen: set[int]) -> int:
    """How many of ``days``' rows fit before one would open a day beyond MAX_DAYS_PER_BATCH
    (``seen`` gains the days taken)."""
    for k, day in enumerate(days):
        if day not in seen:
            if len(seen) >= MAX_DAYS_PER_BATCH:
                return k
            seen.add(day)
    return len(days)


def _rebuilder(normalizer: Normalizer, now: datetime) -> Callable[[list], list[tuple]]:
    """The row tuples of accepted messages, for the writer's row-by-row fallback: the decoders
    sent only COPY CSV. Normalising is deterministic for a given ``now``, so the rows are the
    ones the text was rendered from."""

    def rebuild(sources: list) -> list[tuple]:
        return [
            normalizer.normalize(source.value(), source.partition(), source.offset(), now)
            for source in sources
        ]

    return rebuild


def _count(polled: Polled) -> int:
    return sum(len(records) for records in polled.values())


def _without(polled: Polled, rest: Polled) -> Polled:
    """What ``polled`` holds before ``rest`` (the messages a cut-short batch took)."""
    taken: Polled = {}
    for tp, records in polled.items():
        left = len(rest.get(tp, ()))
        if left < len(records):
            taken[tp] = records[: len(records) - left]
    return taken
