"""Re-ingest dead letters through the current contract, after a fix to the contract or settings.

Each selected dead letter's bytes go through the same ``Normalizer`` as live ingestion and, when
accepted, into its raw table at its original Kafka coordinates with ``on conflict do nothing`` on
the event key. A stored (or already stored) dead letter is marked ``replayed_at`` in the same
transaction as its row: never deleted, so the history stays; a second replay selects only the
letters not yet replayed, and even a forced second insert would be a duplicate. A letter the
contract still refuses keeps ``replayed_at`` null and records the new reason in
``replay_outcome``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from llmhub.config import Settings
from llmhub.contract.topics import TOPICS
from llmhub.ingest.normalize import Normalizer, Rejection
from llmhub.ingest.writer import DeadLetter, Message, RawWriter, TableRows

log = logging.getLogger(__name__)

CHUNK = 2_000


@dataclass(frozen=True)
class ReplayFilter:
    """Which dead letters to replay: classes, contract topics, ``received_at`` window."""

    error_classes: Sequence[str] = ()
    topics: Sequence[str] = ()
    since: datetime | None = None
    until: datetime | None = None


@dataclass
class ReplaySummary:
    selected: int = 0
    stored: int = 0
    already_stored: int = 0
    still_rejected: dict[str, int] = field(default_factory=dict)
    skipped_unknown_topic: int = 0
    dry_run: bool = False
    stored_per_table: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "selected": self.selected,
            "stored": self.stored,
            "already_stored": self.already_stored,
            "still_rejected": self.still_rejected,
            "skipped_unknown_topic": self.skipped_unknown_topic,
            "stored_per_table": self.stored_per_table,
            "dry_run": self.dry_run,
        }


def _where(settings: Settings, selection: ReplayFilter) -> tuple[sql.Composable, list[Any]]:
    clauses: list[sql.Composable] = [sql.SQL("replayed_at is null")]
    params: list[Any] = []
    if selection.error_classes:
        clauses.append(sql.SQL("error_class = any(%s)"))
        params.append(list(selection.error_classes))
    if selection.topics:
        clauses.append(sql.SQL("topic = any(%s)"))
        params.append([settings.topic(t) for t in selection.topics])
    if selection.since is not None:
        clauses.append(sql.SQL("received_at >= %s"))
        params.append(selection.since)
    if selection.until is not None:
        clauses.append(sql.SQL("received_at < %s"))
        params.append(selection.until)
    return sql.SQL(" and ").join(clauses), params


def replay_dead_letters(
    conn: psycopg.Connection,
    settings: Settings,
    selection: ReplayFilter = ReplayFilter(),
    dry_run: bool = False,
    on_chunk: Callable[[ReplaySummary], None] | None = None,
) -> ReplaySummary:
    """Replay the selected dead letters in chunks of ``CHUNK``, one transaction each (rolled
    back when ``dry_run``). ``conn`` must be in autocommit mode."""
    summary = ReplaySummary(dry_run=dry_run)
    specs = {settings.topic(spec.topic): spec for spec in TOPICS}
    normalizers = {topic: Normalizer(spec, settings) for topic, spec in specs.items()}
    writer = RawWriter(conn, settings.consumer_group)
    where, params = _where(settings, selection)
    after = ("", -1, -1)  # keyset pagination over the primary key
    while True:
        letters = conn.execute(
            sql.SQL(
                "select topic, kafka_partition, kafka_offset, message_key, raw_value, "
                "extract(epoch from kafka_timestamp) * 1000 from raw.dead_letter "
                "where {} and (topic, kafka_partition, kafka_offset) > (%s, %s, %s) "
                "order by topic, kafka_partition, kafka_offset limit %s"
            ).format(where),
            [*params, *after, CHUNK],
        ).fetchall()
        if not letters:
            break
        after = letters[-1][:3]
        summary.selected += len(letters)
        with conn.transaction(force_rollback=dry_run):
            _replay_chunk(conn, writer, normalizers, specs, letters, summary)
        if on_chunk is not None:
            on_chunk(summary)
    return summary


def _replay_chunk(
    conn: psycopg.Connection,
    writer: RawWriter,
    normalizers: dict[str, Normalizer],
    specs: dict[str, Any],
    letters: list[tuple],
    summary: ReplaySummary,
) -> None:
    now = datetime.now(UTC)
    tables: dict[str, TableRows] = {}
    marks: list[tuple[str, str, int, int]] = []  # (outcome, topic, partition, offset)
    for topic, partition, offset, key, value, timestamp_ms in letters:
        normalizer = normalizers.get(topic)
        if normalizer is None:
            summary.skipped_unknown_topic += 1
            continue
        raw = bytes(value) if value is not None else None
        source = Message(
            topic,
            partition,
            offset,
            bytes(key) if key is not None else None,
            raw,
            int(timestamp_ms) if timestamp_ms is not None else None,
        )
        outcome = normalizer.normalize(raw, partition, offset, now)
        if type(outcome) is Rejection:
            _count(summary.still_rejected, str(outcome.error_class))
            reason = f"still rejected ({outcome.error_class}): {outcome.error}"
            marks.append((reason, *source_key(source)))
            continue
        target = tables.setdefault(specs[topic].table, TableRows())
        target.rows.append(outcome)
        target.sources.append(source)
    for table, rows in tables.items():
        for source, result in zip(rows.sources, writer.insert_each(table, rows), strict=True):
            if isinstance(result, DeadLetter):
                _count(summary.still_rejected, str(result.error_class))
                marks.append(
                    (f"still rejected ({result.error_class}): {result.error}", *source_key(source))
                )
            elif result == 1:
                summary.stored += 1
                _count(summary.stored_per_table, table)
                marks.append(("stored", *source_key(source)))
            else:
                summary.already_stored += 1
                marks.append(("already stored", *source_key(source)))
    with conn.cursor() as cursor:
        cursor.executemany(
            """
            update raw.dead_letter
            set replay_outcome = %s,
                replayed_at = case when %s then now() else replayed_at end
            where topic = %s and kafka_partition = %s and kafka_offset = %s
            """,
            [(outcome[:1000], not outcome.startswith("still"), *key) for outcome, *key in marks],
        )


def source_key(source: Message) -> tuple[str, int, int]:
    return source.topic, source.partition, source.offset


def _count(counter: dict[str, int], key: str) -> None:
    counter[key] = counter.get(key, 0) + 1
