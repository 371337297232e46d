"""Prometheus metrics of the ingester: one set of figures, served live or written once per run.

The figures come from the ``IngestReport`` the ingester hands its ``on_batch`` callback after
every batch (cumulative for the run) and returns at the end (consumer lag included): a
``RunObserver`` turns the growth between two calls into counter increments and one observation
of the batch-duration histogram. Two ways out, with the same metric names:

- **live**: ``llmhub ingest --follow --metrics-port 9464`` serves ``/metrics`` while it ingests
  (``serve``); the local Prometheus scrapes it as job ``llmhub-ingest``.
- **per Dagster run**: each ``kafka_ingestion`` run is a new process, so the asset adds its run to
  the cumulative totals kept in ``<metrics dir>/llmhub_ingest.json`` and rewrites
  ``llmhub_ingest.prom`` in the Prometheus text format (``TextfileSink``); node_exporter's
  textfile collector serves that directory (job ``llmhub-dagster-ingest``). Counters stay
  monotonic across runs, so ``rate()`` works as on the live ingester.

The totals live in a plain dataclass rendered by a custom collector, rather than in
prometheus-client's own Counter objects, because a run's textfile must start from the previous
run's totals (prometheus-client cannot seed a histogram).
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, start_http_server, write_to_textfile
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

if TYPE_CHECKING:
    from llmhub.config import Settings
    from llmhub.ingest.engine import IngestReport

log = logging.getLogger(__name__)

PREFIX = "llmhub_ingest"
# Seconds; a batch is one poll + normalise + one transaction, 50,000 messages at most.
BATCH_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, math.inf)
TEXTFILE_NAME = f"{PREFIX}.prom"
STATE_NAME = f"{PREFIX}.json"

# Every series the ingester exports (without the _total/_bucket suffixes of the exposition); the
# alert rules and dashboards are tested against this list.
METRIC_NAMES: dict[str, str] = {
    f"{PREFIX}_records_in": "counter",
    f"{PREFIX}_records_out": "counter",
    f"{PREFIX}_duplicates_skipped": "counter",
    f"{PREFIX}_dead_letters": "counter",
    f"{PREFIX}_batch_duration_seconds": "histogram",
    f"{PREFIX}_consumer_lag_messages": "gauge",
    f"{PREFIX}_rows_per_second": "gauge",
    f"{PREFIX}_last_batch_timestamp_seconds": "gauge",
    f"{PREFIX}_last_run_timestamp_seconds": "gauge",
    f"{PREFIX}_runs": "counter",
}


def exposed_names() -> set[str]:
    """Sample names as Prometheus stores them (``_total``, ``_bucket``/``_sum``/``_count``)."""
    names: set[str] = set()
    for name, kind in METRIC_NAMES.items():
        if kind == "counter":
            names.add(f"{name}_total")
        elif kind == "histogram":
            names.update(f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(name)
    return names


def _split_partition(key: str) -> tuple[str, str]:
    """``"llm.telemetry[3]"`` (the report's partition names) -> ``("llm.telemetry", "3")``."""
    topic, _, rest = key.rpartition("[")
    return topic, rest.rstrip("]")


@dataclass
class IngestTotals:
    """Cumulative figures of one ingester (or of every Dagster run so far)."""

    records_in: dict[str, int] = field(default_factory=dict)  # topic -> messages read
    records_out: dict[str, int] = field(default_factory=dict)  # table -> rows inserted
    duplicates: dict[str, int] = field(default_factory=dict)  # table -> redeliveries skipped
    dead_letters: dict[str, int] = field(default_factory=dict)  # "topic\terror class" -> count
    batch_buckets: list[int] = field(default_factory=lambda: [0] * len(BATCH_BUCKETS))
    batch_sum_s: float = 0.0
    lag: dict[str, int] = field(default_factory=dict)  # "topic[partition]" -> messages unread
    rows_per_second: float = 0.0
    last_batch_at: float = 0.0
    last_run_at: float = 0.0
    runs: int = 0

    def observe_batch(self, seconds: float) -> None:
        for i, bound in enumerate(BATCH_BUCKETS):
            if seconds <= bound:
                self.batch_buckets[i] += 1
                break
        self.batch_sum_s += seconds

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> IngestTotals:
        data = json.loads(text)
        totals = cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        if len(totals.batch_buckets) != len(BATCH_BUCKETS):  # bucket bounds changed: restart
            totals.batch_buckets = [0] * len(BATCH_BUCKETS)
            totals.batch_sum_s = 0.0
        return totals


def _add(target: dict[str, int], key: str, value: int) -> None:
    if value:
        target[key] = target.get(key, 0) + value


class IngestMetrics:
    """The ingester's totals and their Prometheus rendering (a prometheus-client collector).

    Args:
        table_topics: raw table -> physical topic, so row counters carry both labels.
        totals: figures to continue from (a previous run's), or zero.
        clock: wall-clock seconds (tests pass a fake).
    """

    def __init__(
        self,
        table_topics: Mapping[str, str],
        totals: IngestTotals | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table_topics = dict(table_topics)
        self.totals = totals or IngestTotals()
        self.clock = clock
        # The HTTP server's thread renders while the ingesting thread adds.
        self._lock = threading.Lock()

    @classmethod
    def for_settings(cls, settings: Settings, totals: IngestTotals | None = None) -> IngestMetrics:
        from llmhub.contract.topics import TOPICS

        return cls({spec.table: settings.topic(spec.topic) for spec in TOPICS}, totals)

    def start_run(self, monotonic: Callable[[], float] = time.monotonic) -> RunObserver:
        """An observer for one ``Ingestor.run``: pass it as (or call it from) ``on_batch``."""
        return RunObserver(self, monotonic)

    def registry(self) -> CollectorRegistry:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return registry

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            totals = IngestTotals.from_json(self.totals.to_json())
        topics = sorted(set(self.table_topics.values()) | set(totals.records_in))
        records_in = CounterMetricFamily(
            f"{PREFIX}_records_in", "Kafka messages read, per topic.", labels=["topic"]
        )
        for topic in topics:
            records_in.add_metric([topic], totals.records_in.get(topic, 0))
        yield records_in
        for name, values, help_text in (
            ("records_out", totals.records_out, "Rows inserted into a raw table."),
            ("duplicates_skipped", totals.duplicates, "Redelivered events already stored."),
        ):
            family = CounterMetricFamily(f"{PREFIX}_{name}", help_text, labels=["topic", "table"])
            for table in sorted(set(self.table_topics) | set(values)):
                family.add_metric([self.table_topics.get(table, ""), table], values.get(table, 0))
            yield family
        dead = CounterMetricFamily(
            f"{PREFIX}_dead_letters",
            "Messages dead-lettered, per topic and error class.",
            labels=["topic", "error_class"],
        )
        for key in sorted(totals.dead_letters):
            topic, _, error_class = key.partition("\t")
            dead.add_metric([topic, error_class], totals.dead_letters[key])
        yield dead
        cumulative, buckets = 0, []
        for bound, count in zip(BATCH_BUCKETS, totals.batch_buckets, strict=True):
            cumulative += count
            buckets.append(("+Inf" if math.isinf(bound) else repr(bound), cumulative))
        yield HistogramMetricFamily(
            f"{PREFIX}_batch_duration_seconds",
            "Wall time of one batch: poll, normalise, write and commit.",
            buckets=buckets,
            sum_value=totals.batch_sum_s,
        )
        lag = GaugeMetricFamily(
            f"{PREFIX}_consumer_lag_messages",
            "Messages left unread per partition at the end of the last run.",
            labels=["topic", "partition"],
        )
        for key in sorted(totals.lag):
            lag.add_metric(list(_split_partition(key)), totals.lag[key])
        yield lag
        for name, value, help_text in (
            ("rows_per_second", totals.rows_per_second, "Rows inserted per second, last batch."),
            (
                "last_batch_timestamp_seconds",
                totals.last_batch_at,
                "Unix time of the last batch that read messages.",
            ),
            (
                "last_run_timestamp_seconds",
                totals.last_run_at,
                "Unix time the last ingestion run finished.",
            ),
        ):
            yield GaugeMetricFamily(f"{PREFIX}_{name}", help_text, value=value)
        yield CounterMetricFamily(f"{PREFIX}_runs", "Ingestion runs finished.", value=totals.runs)


class RunObserver:
    """Turns the cumulative reports of one run into increments of the totals."""

    def __init__(self, metrics: IngestMetrics, monotonic: Callable[[], float]) -> None:
        self.metrics = metrics
        self.monotonic = monotonic
        self._last_tick = monotonic()
        self._seen: dict[str, dict] = {
            "rows_written": {},
            "duplicates_skipped": {},
            "dead_letter_classes": {},
        }

    def __call__(self, report: IngestReport) -> None:
        """One batch was written; ``report`` is the run's cumulative report so far."""
        now = self.monotonic()
        seconds, self._last_tick = now - self._last_tick, now
        with self.metrics._lock:
            rows = self._account(report)
            totals = self.metrics.totals
            totals.observe_batch(seconds)
            totals.rows_per_second = rows / seconds if seconds > 0 else 0.0
            totals.last_batch_at = self.metrics.clock()

    def finish(self, report: IngestReport) -> None:
        """The run ended (``report`` as ``Ingestor.run`` returned it): lag, and whatever the
        batch callbacks did not see (a run without ``on_batch``)."""
        with self.metrics._lock:
            if self._account(report):
                self.metrics.totals.last_batch_at = self.metrics.clock()
            totals = self.metrics.totals
            totals.lag.update(report.lag)
            totals.runs += 1
            totals.last_run_at = self.metrics.clock()

    def _account(self, report: IngestReport) -> int:
        """Add the growth since the last call; return the rows inserted in it."""
        totals = self.metrics.totals
        inserted = 0
        for table, count in report.rows_written.items():
            delta = count - self._seen["rows_written"].get(table, 0)
            _add(totals.records_out, table, delta)
            _add(totals.records_in, self.metrics.table_topics.get(table, table), delta)
            inserted += delta
        for table, count in report.duplicates_skipped.items():
            delta = count - self._seen["duplicates_skipped"].get(table, 0)
            _add(totals.duplicates, table, delta)
            _add(totals.records_in, self.metrics.table_topics.get(table, table), delta)
        for (topic, error_class), count in report.dead_letter_classes.items():
            delta = count - self._seen["dead_letter_classes"].get((topic, error_class), 0)
            _add(totals.dead_letters, f"{topic}\t{error_class}", delta)
            _add(totals.records_in, topic, delta)
        self._seen = {
            "rows_written": dict(report.rows_written),
            "duplicates_skipped": dict(report.duplicates_skipped),
            "dead_letter_classes": dict(report.dead_letter_classes),
        }
        return inserted


def serve(metrics: IngestMetrics, port: int, host: str = "127.0.0.1") -> None:
    """Serve ``/metrics`` from a daemon thread for as long as the process lives."""
    start_http_server(port, addr=host, registry=metrics.registry())


@dataclass(frozen=True)
class TextfileSink:
    """Cumulative totals of short-lived runs (Dagster's) in a directory node_exporter reads.

    One run at a time writes (the ingestion job's run queue allows one); both files are
    replaced atomically, so a scrape never sees half a file.
    """

    directory: Path

    @property
    def textfile(self) -> Path:
        return self.directory / TEXTFILE_NAME

    @property
    def state_file(self) -> Path:
        return self.directory / STATE_NAME

    def load(self, settings: Settings) -> IngestMetrics:
        """The totals so far; zero if there are none or they cannot be read (Prometheus sees
        a counter reset, which ``rate()`` handles)."""
        totals = None
        try:
            totals = IngestTotals.from_json(self.state_file.read_text())
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError) as exc:
            log.warning(
                "ingestion metrics state %s unreadable (%s); starting from zero",
                self.state_file,
                exc,
            )
        return IngestMetrics.for_settings(settings, totals)

    def save(self, metrics: IngestMetrics) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with metrics._lock:
            state = metrics.totals.to_json()
        staging = self.state_file.with_suffix(f".json.{os.getpid()}.tmp")
        staging.write_text(state)
        staging.replace(self.state_file)
        write_to_textfile(str(self.textfile), metrics.registry())
