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

import logging
import multiprocessing
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from kafka import TopicPartition

from llmhub.config import Settings
from llmhub.contract.topics import BY_TOPIC, TOPICS
from llmhub.db import connect
from llmhub.ingest.normalize import Normalizer, Rejection
from llmhub.ingest.reader import PartitionReader, as_message
from llmhub.ingest.writer import (
    Batch,
    DeadLetter,
    RawWriter,
    TableRows,
    WriteResult,
    stored_offsets,
)

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS = 1000
DRAIN_POLL_TIMEOUT_MS = 200
MAX_DRAIN_POLLS = 100
ACCUMULATE_S = 0.5
ACCUMULATE_POLL_MS = 50


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

    @property
    def events_per_s(self) -> float:
        return self.messages / self.duration_s if self.duration_s > 0 else 0.0

    def merge(self, other: IngestReport) -> IngestReport:
        """Combine the reports of workers that ran side by side."""
        merged = IngestReport(
            messages=self.messages + other.messages,
            batches=self.batches + other.batches,
            duration_s=max(self.duration_s, other.duration_s),
            partitions=self.partitions + other.partitions,
            lag={**self.lag, **other.lag},
            skipped_partitions=self.skipped_partitions + other.skipped_partitions,
        )
        for name in ("rows_written", "duplicates_skipped", "dead_lettered", "dead_letter_classes"):
            total = dict(getattr(self, name))
            for key, value in getattr(other, name).items():
                total[key] = total.get(key, 0) + value
            setattr(merged, name, total)
        return merged

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
    """

    def __init__(
        self,
        settings: Settings,
        topics: Sequence[str] | None = None,
        worker_index: int = 0,
        worker_count: int = 1,
        batch_max_records: int | None = None,
    ) -> None:
        if not 0 <= worker_index < worker_count:
            raise ValueError(f"worker_index {worker_index} is not in [0, {worker_count})")
        self.settings = settings
        names = list(topics) if topics else [spec.topic for spec in TOPICS]
        unknown = [t for t in names if t not in BY_TOPIC]
        if unknown:
            raise ValueError(f"unknown topics {unknown}; the contract has {sorted(BY_TOPIC)}")
        # Physical topic names (with the configured prefix) from here on.
        self.topics = [settings.topic(t) for t in names]
        self.worker_index = worker_index
        self.worker_count = worker_count
        self.batch_max_records = batch_max_records or settings.batch_max_records
        self.normalizers = {settings.topic(t): Normalizer(BY_TOPIC[t], settings) for t in names}

    def run(
        self,
        until_caught_up: bool = True,
        max_batches: int | None = None,
        on_batch: Callable[[IngestReport], None] | None = None,
    ) -> IngestReport:
        """Ingest until caught up with the end offsets seen at start, or ``max_batches``."""
        started = time.monotonic()
        report = IngestReport()
        consumer = make_reader(self.settings)
        try:
            with connect(self.settings, autocommit=True) as conn:
                claimed, skipped = self._claim(conn, consumer)
                report.partitions = [_tp_name(tp) for tp in claimed]
                report.skipped_partitions = [_tp_name(tp) for tp in skipped]
                if claimed:
                    self._consume(
                        conn, consumer, claimed, report, until_caught_up, max_batches, on_batch
                    )
                    marks = consumer.watermarks(claimed, cached=True)
                    unknown = [tp for tp, (_, high) in marks.items() if high < 0]
                    if unknown:  # never fetched in this run: ask the broker
                        marks.update(consumer.watermarks(unknown))
                    end = {tp: high for tp, (_, high) in marks.items()}
                    positions = stored_offsets(
                        conn,
                        self.settings.consumer_group,
                        [(tp.topic, tp.partition) for tp in claimed],
                    )
                    report.lag = {
                        _tp_name(tp): max(0, end[tp] - positions.get((tp.topic, tp.partition), 0))
                        for tp in claimed
                    }
                    # Releasing explicitly keeps the lock scope obvious; closing would too.
                    conn.execute("select pg_advisory_unlock_all()")
        finally:
            consumer.close()
        report.duration_s = time.monotonic() - started
        return report

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
    ) -> None:
        positions, targets = self._seek(conn, consumer, claimed)
        writer = RawWriter(conn, self.settings.consumer_group, as_message)

        def account(batch: Batch, result: WriteResult) -> None:
            report.batches += 1
            report.messages += batch.message_count
            for table, count in result.inserted.items():
                report.rows_written[table] = report.rows_written.get(table, 0) + count
            for table, count in result.duplicates.items():
                report.duplicates_skipped[table] = report.duplicates_skipped.get(table, 0) + count
            for dead in batch.dead_letters:
                topic = dead.source.topic
                report.dead_lettered[topic] = report.dead_lettered.get(topic, 0) + 1
                key = (topic, dead.error_class)
                report.dead_letter_classes[key] = report.dead_letter_classes.get(key, 0) + 1
            if on_batch is not None:
                on_batch(report)

        # librdkafka prefetches the next messages on its own threads, and PostgreSQL parses
        # COPY rows as they stream in, so a plain loop keeps both busy; a writer thread here
        # only added GIL hand-offs (measured slower).
        built = 0
        drain_polls = 0
        while max_batches is None or built < max_batches:
            reached = all(positions[tp] >= targets[tp] for tp in claimed)
            if until_caught_up and reached:
                # Past the targets, short drain polls pick up a tail the listed end offsets
                # under-report (see _offset_exists), until one comes back empty; bounded so a
                # producer that never pauses cannot keep the run going.
                if drain_polls >= MAX_DRAIN_POLLS:
                    break
                drain_polls += 1
            polled = self._poll_batch(
                consumer, DRAIN_POLL_TIMEOUT_MS if reached else POLL_TIMEOUT_MS
            )
            if not polled:
                if not until_caught_up or reached:
                    break
                continue
            batch = self._build_batch(polled, positions)
            account(batch, writer.write(batch))
            for (topic, partition), (_, end) in batch.offsets.items():
                positions[TopicPartition(topic, partition)] = end
            built += 1

    def _poll_batch(self, consumer: PartitionReader, timeout_ms: int) -> dict:
        """Poll until ``batch_max_records`` or a short time budget: one fetch response holds a
        few thousand messages, and fewer, larger transactions cost less per message."""
        polled = consumer.poll(timeout_ms=timeout_ms, max_records=self.batch_max_records)
        count = sum(len(records) for records in polled.values())
        deadline = time.monotonic() + ACCUMULATE_S
        while polled and count < self.batch_max_records and time.monotonic() < deadline:
            more = consumer.poll(
                timeout_ms=ACCUMULATE_POLL_MS, max_records=self.batch_max_records - count
            )
            if not more:
                break
            for tp, records in more.items():
                polled.setdefault(tp, []).extend(records)
                count += len(records)
        return polled

    def _build_batch(self, polled: dict, positions: dict[TopicPartition, int]) -> Batch:
        batch = Batch()
        now = datetime.now(UTC)
        for tp, records in polled.items():
            if not records:
                continue
            normalizer = self.normalizers[tp.topic]
            normalize = normalizer.normalize
            target = batch.tables.setdefault(normalizer.table.name, TableRows())
            rows, sources = target.rows, target.sources
            partition = tp.partition
            for record in records:
                outcome = normalize(record.value(), partition, record.offset(), now)
                if type(outcome) is Rejection:
                    batch.dead_letters.append(
                        DeadLetter(as_message(record), outcome.error_class, outcome.error)
                    )
                else:
                    rows.append(outcome)
                    sources.append(record)
            batch.offsets[(tp.topic, partition)] = (positions[tp], records[-1].offset() + 1)
        return batch


def _run_worker(
    settings: Settings,
    topics: Sequence[str] | None,
    worker_index: int,
    worker_count: int,
    until_caught_up: bool,
    max_batches: int | None,
) -> IngestReport:
    ingestor = Ingestor(settings, topics, worker_index, worker_count)
    return ingestor.run(until_caught_up=until_caught_up, max_batches=max_batches)


def run_parallel(
    settings: Settings,
    workers: int,
    topics: Sequence[str] | None = None,
    until_caught_up: bool = True,
    max_batches: int | None = None,
) -> IngestReport:
    """Run ``workers`` ingester processes side by side, each on its share of the partitions.

    Python parses JSON under one GIL, so a second core needs a second process. On several
    machines, run one ``llmhub ingest --worker-index I --worker-count N`` per machine instead.
    """
    if workers <= 1:
        return Ingestor(settings, topics).run(until_caught_up, max_batches)
    started = time.monotonic()
    # fork starts a worker in milliseconds (spawn re-imports everything, seconds per worker) and
    # is safe here only while this process has no other threads and no open connections.
    method = "fork" if threading.active_count() == 1 else "spawn"
    context = multiprocessing.get_context(method)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [
            pool.submit(_run_worker, settings, topics, i, workers, until_caught_up, max_batches)
            for i in range(workers)
        ]
        reports = [future.result() for future in futures]
    merged = reports[0]
    for report in reports[1:]:
        merged = merged.merge(report)
    merged.duration_s = time.monotonic() - started
    return merged
