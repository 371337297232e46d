"""The real local stack for integration tests: a throwaway database and per-test topics.

The session creates database ``llmhub_test`` (dropped first if a previous run left it) and
migrates it; every test gets its own topic prefix and consumer group, and its rows and topics are
removed afterwards. The shared ``llmhub`` database and the unprefixed topics are never touched.
If the stack is unreachable the tests skip, unless ``LLMHUB_REQUIRE_STACK=1`` (CI), where they
fail.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import psycopg
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from psycopg import sql

from llmhub.config import Settings, load_settings, redact, with_database
from llmhub.contract.topics import BY_TOPIC, RAW_TABLES, TOPICS
from llmhub.db import migrate
from llmhub.ingest.engine import Ingestor, IngestReport
from llmhub.stack.broker import ensure_topics

# Parallel runs (several work trees on one stack) each name their own database.
TEST_DATABASE = os.environ.get("LLMHUB_TEST_DATABASE", "llmhub_test")
LLMHUB_CLI = Path(sys.executable).with_name("llmhub")
CLEANED_TABLES = (*RAW_TABLES, "dead_letter", "kafka_offsets", "retention_runs")
WAIT_S = 60.0


class Record(Protocol):
    """What ``IsolatedStack.produce`` sends (``llmhub.producers.sink.Message`` fits)."""

    topic: str
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class Raw:
    """A message to send as is: ``topic`` is a contract topic name (the prefix is added)."""

    topic: str
    value: bytes | None
    key: bytes | None = None
    timestamp_ms: int | None = None


def wait_for(condition: Callable[[], Any], what: str, timeout_s: float = WAIT_S) -> Any:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` if it never
    does (a bound on waiting, not a timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


def _stack_problem(settings: Settings) -> str | None:
    try:
        with psycopg.connect(settings.database_url, connect_timeout=3):
            pass
    except psycopg.Error as exc:
        return f"TimescaleDB at {redact(settings.database_url)}: {exc}".strip()
    host, _, port = settings.kafka_bootstrap.split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=3):
            pass
    except OSError as exc:
        return f"Kafka broker at {settings.kafka_bootstrap}: {exc}"
    return None


@pytest.fixture(scope="session")
def test_settings() -> Iterator[Settings]:
    """Settings for database ``llmhub_test`` (fresh, migrated) with a session-unique prefix."""
    settings = load_settings()
    problem = _stack_problem(settings)
    if problem:
        message = f"local stack unreachable ({problem}); start it with `llmhub stack up`"
        if os.environ.get("LLMHUB_REQUIRE_STACK") == "1":
            pytest.fail(f"{message} (LLMHUB_REQUIRE_STACK=1)", pytrace=False)
        pytest.skip(message)
    admin_url = with_database(settings.database_url, "postgres")
    drop = sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(TEST_DATABASE))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(drop)
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(TEST_DATABASE)))
    session = uuid.uuid4().hex[:8]
    test = replace(
        settings,
        database_url=with_database(settings.database_url, TEST_DATABASE),
        topic_prefix=f"t{session}.",
        consumer_group=f"llmhub-test-{session}",
    )
    migrate(test)
    yield test
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(drop)


@dataclass
class IsolatedStack:
    """One test's view of the stack: its settings (unique topic prefix and consumer group), a
    database connection, a producer, and helpers to read back what the pipeline stored."""

    settings: Settings
    conn: psycopg.Connection
    workdir: Path
    _producer: KafkaProducer | None = None
    _consumer: KafkaConsumer | None = None
    _round_robin: Counter[str] = field(default_factory=Counter)
    _started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return self.settings.topic_prefix

    def topic(self, name: str) -> str:
        """The physical topic of contract topic ``name``."""
        return self.settings.topic(name)

    def partitions(self) -> list[TopicPartition]:
        return [
            TopicPartition(self.topic(spec.topic), p)
            for spec in TOPICS
            for p in range(spec.partitions)
        ]

    # Producing -------------------------------------------------------------------------------

    def producer(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = KafkaProducer(
                bootstrap_servers=self.settings.kafka_bootstrap,
                acks="all",
                linger_ms=5,
                batch_size=262_144,
                max_request_size=8 * 1024 * 1024,
            )
        return self._producer

    def _partition(self, topic: str, key: bytes | None) -> int:
        count = BY_TOPIC[topic].partitions
        if key is not None:
            return zlib.crc32(key) % count
        self._round_robin[topic] += 1
        return self._round_robin[topic] % count

    def produce(self, records: Iterable[Record]) -> Counter[tuple[str, int]]:
        """Send ``records`` (contract topic names) and wait for every acknowledgement.

        Returns the number of messages sent per (physical topic, partition). The last message
        of each partition goes in a record batch of its own, after a flush: the dev broker
        (Tansu 0.6) lists a partition's end offset as the last batch's base offset + 1, which is
        the true end only when that batch holds one record, and tests compare stored offsets
        with the listed ends.
        """
        producer = self.producer()
        failures: list[BaseException] = []
        sent: Counter[tuple[str, int]] = Counter()
        held: dict[tuple[str, int], Record] = {}

        def send(physical: str, partition: int, record: Record) -> None:
            future = producer.send(
                physical,
                value=record.value,
                key=record.key,
                partition=partition,
                timestamp_ms=getattr(record, "timestamp_ms", None),
            )
            future.add_errback(failures.append)
            sent[(physical, partition)] += 1

        for record in records:
            where = (self.topic(record.topic), self._partition(record.topic, record.key))
            previous = held.get(where)
            if previous is not None:
                send(*where, previous)
            held[where] = record
        producer.flush()
        for where, record in held.items():
            send(*where, record)
        producer.flush()
        if failures:
            raise RuntimeError(f"{len(failures)} messages were not delivered: {failures[0]!r}")
        return sent

    def sent_per_table(self, sent: Counter[tuple[str, int]]) -> dict[str, int]:
        """Messages sent per raw table, from what ``produce`` returned."""
        tables = {self.topic(spec.topic): spec.table for spec in TOPICS}
        totals: Counter[str] = Counter()
        for (topic, _), count in sent.items():
            totals[tables[topic]] += count
        return {table: totals[table] for table in RAW_TABLES}

    def send(self, topic: str, values: Iterable[bytes | None], key: bytes | None = None) -> int:
        """Send raw ``values`` to contract topic ``topic``; returns how many were sent."""
        return sum(self.produce(Raw(topic, value, key) for value in values).values())

    # Reading back ----------------------------------------------------------------------------

    def ingest(self, settings: Settings | None = None, **kwargs: Any) -> IngestReport:
        """One in-process ingestion run until caught up (``Ingestor`` keyword arguments)."""
        run_kwargs = {k: kwargs.pop(k) for k in ("until_caught_up", "max_batches") if k in kwargs}
        return Ingestor(settings or self.settings, **kwargs).run(**run_kwargs)

    def query(self, statement: str | sql.Composable, params: Any = None) -> list[tuple]:
        return self.conn.execute(statement, params).fetchall()  # type: ignore[arg-type]

    def scalar(self, statement: str | sql.Composable, params: Any = None) -> Any:
        rows = self.query(statement, params)
        return rows[0][0] if rows else None

    def count(self, table: str) -> int:
        return int(self.scalar(sql.SQL("select count(*) from {}").format(_raw(table))))

    @contextmanager
    def insert_trigger(
        self, name: str, table: str, body: str, clause: str, *, constraint: bool = False
    ) -> Iterator[None]:
        """While open: plpgsql function ``raw.<name>`` (``body``, between ``begin`` and
        ``end``) run by trigger ``name`` after each insert into ``raw.<table>`` (``clause``:
        what follows ``on <table>``, e.g. ``for each row when (...)``); both dropped on exit."""
        function = sql.Identifier("raw", name)
        self.conn.execute(
            sql.SQL(
                "create or replace function {}() returns trigger language plpgsql as $$ "
                "begin {} end $$"
            ).format(function, sql.SQL(body))  # type: ignore[arg-type]
        )
        self.conn.execute(
            sql.SQL("create {} trigger {} after insert on {} {} execute function {}()").format(
                sql.SQL("constraint" if constraint else ""),
                sql.Identifier(name),
                _raw(table),
                sql.SQL(clause),  # type: ignore[arg-type]
                function,
            )
        )
        try:
            yield
        finally:
            self.conn.execute(
                sql.SQL("drop trigger if exists {} on {}").format(sql.Identifier(name), _raw(table))
            )
            self.conn.execute(sql.SQL("drop function if exists {}()").format(function))

    def counts(self) -> dict[str, int]:
        return {table: self.count(table) for table in RAW_TABLES}

    def end_offsets(self) -> dict[tuple[str, int], int]:
        if self._consumer is None:
            self._consumer = KafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap)
        ends = self._consumer.end_offsets(self.partitions())
        return {(tp.topic, tp.partition): end for tp, end in ends.items()}

    def stored_offsets(self) -> dict[tuple[str, int], int]:
        rows = self.query(
            "select topic, kafka_partition, next_offset from raw.kafka_offsets "
            "where consumer_group = %s",
            (self.settings.consumer_group,),
        )
        return {(topic, partition): offset for topic, partition, offset in rows}

    def advisory_locks(self) -> int:
        return int(
            self.scalar(
                "select count(*) from pg_locks where locktype = 'advisory' "
                "and database = (select oid from pg_database where datname = current_database())"
            )
        )

    # Subprocesses ----------------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for an ``llmhub`` subprocess aimed at this test's database and topics."""
        return {
            **os.environ,
            "LLMHUB_DATABASE_URL": self.settings.database_url,
            "LLMHUB_KAFKA_BOOTSTRAP": self.settings.kafka_bootstrap,
            "LLMHUB_TOPIC_PREFIX": self.prefix,
            "LLMHUB_CONSUMER_GROUP": self.settings.consumer_group,
            **extra,
        }

    def start_cli(self, *args: str, name: str, **extra_env: str) -> subprocess.Popen[bytes]:
        """Start ``llmhub ARGS`` in the background, stdout to ``workdir/NAME.out`` and stderr
        to ``workdir/NAME.log``."""
        with (
            (self.workdir / f"{name}.out").open("wb") as out,
            (self.workdir / f"{name}.log").open("wb") as log,
        ):
            proc = subprocess.Popen(
                [str(LLMHUB_CLI), *args],
                env=self.env(**extra_env),
                stdout=out,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        self._started.append(proc)
        return proc

    def finish_cli(self, proc: subprocess.Popen[bytes], name: str, timeout_s: float = 300) -> str:
        """Wait for a started ``llmhub`` process; fail with its log unless it exits 0.

        Returns what it printed on stdout."""
        try:
            code = proc.wait(timeout=timeout_s)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        log = (self.workdir / f"{name}.log").read_text(errors="replace")
        assert code == 0, f"llmhub {' '.join(map(str, proc.args))} exited {code}:\n{log}"
        return (self.workdir / f"{name}.out").read_text(errors="replace")

    def run_cli(self, *args: str, name: str, timeout_s: float = 300, **extra_env: str) -> str:
        """Run ``llmhub ARGS`` to completion; returns its stdout (see ``finish_cli``)."""
        return self.finish_cli(self.start_cli(*args, name=name, **extra_env), name, timeout_s)

    def close(self) -> None:
        # A test that failed while its background ingester ran must not leave it writing into
        # the next test's tables (seen: a timed-out wait left one ingesting, and the next
        # test's row counts were off).
        for proc in self._started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for client in (self._producer, self._consumer):
            if client is not None:
                client.close()


def _raw(table: str) -> sql.Identifier:
    return sql.Identifier("raw", table)


@pytest.fixture
def stack(test_settings: Settings, tmp_path: Path) -> Iterator[IsolatedStack]:
    """A unique topic prefix (topics created) and consumer group; afterwards the raw tables,
    dead letters, offsets and retention runs are emptied and the topics deleted."""
    run = uuid.uuid4().hex[:8]
    settings = replace(test_settings, topic_prefix=f"t{run}.", consumer_group=f"llmhub-test-{run}")
    ensure_topics(settings.kafka_bootstrap, settings.topic_prefix)
    conn = psycopg.connect(settings.database_url, autocommit=True)
    isolated = IsolatedStack(settings, conn, tmp_path)
    try:
        yield isolated
    finally:
        isolated.close()
        conn.execute(
            sql.SQL("truncate {}").format(sql.SQL(", ").join(_raw(t) for t in CLEANED_TABLES))
        )
        conn.close()
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        try:
            admin.delete_topics([settings.topic(spec.topic) for spec in TOPICS])
        except Exception:  # brokers may refuse deletion; the prefix is unique anyway
            pass
        finally:
            admin.close()
