"""The ingester's Prometheus metrics: reports in, counters and the exposition out."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from llmhub.config import Settings
from llmhub.ingest.engine import IngestReport
from llmhub.ingest.metrics import (
    METRIC_NAMES,
    IngestMetrics,
    IngestTotals,
    TextfileSink,
    exposed_names,
    serve,
)

TABLE_TOPICS = {"llm_requests": "llm.telemetry", "security_alerts": "llm.security"}


class FakeClock:
    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def _samples(metrics: IngestMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry()).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _report(written: int, dup: int, dead: dict[tuple[str, str], int], batches: int) -> IngestReport:
    report = IngestReport(
        rows_written={"llm_requests": written},
        duplicates_skipped={"llm_requests": dup},
        dead_letter_classes=dict(dead),
        batches=batches,
    )
    report.dead_lettered = {}
    for (topic, _), n in dead.items():
        report.dead_lettered[topic] = report.dead_lettered.get(topic, 0) + n
    report.messages = written + dup + sum(dead.values())
    return report


def test_batches_become_counter_increments_and_histogram_observations() -> None:
    tick = FakeClock(100.0)
    wall = FakeClock(1_700_000_000.0)
    metrics = IngestMetrics(TABLE_TOPICS, clock=wall)
    observe = metrics.start_run(monotonic=tick)
    tick.now = 100.4
    observe(_report(80, 0, {("llm.telemetry", "schema"): 2}, 1))
    tick.now = 103.4  # second batch: 3 s, 120 more rows
    observe(_report(200, 5, {("llm.telemetry", "schema"): 3, ("llm.telemetry", "empty"): 1}, 2))
    final = _report(200, 5, {("llm.telemetry", "schema"): 3, ("llm.telemetry", "empty"): 1}, 2)
    final.lag = {"llm.telemetry[0]": 7, "llm.telemetry[1]": 0}
    wall.now += 10
    observe.finish(final)

    s = _samples(metrics)
    telemetry = (("topic", "llm.telemetry"),)
    table = (("table", "llm_requests"), ("topic", "llm.telemetry"))
    # Every message read counts once: rows + duplicates + dead letters.
    assert s[("llmhub_ingest_records_in_total", telemetry)] == 200 + 5 + 4
    assert s[("llmhub_ingest_records_out_total", table)] == 200
    assert s[("llmhub_ingest_duplicates_skipped_total", table)] == 5
    dead = "llmhub_ingest_dead_letters_total"
    assert s[(dead, (("error_class", "schema"), ("topic", "llm.telemetry")))] == 3
    assert s[(dead, (("error_class", "empty"), ("topic", "llm.telemetry")))] == 1
    assert s[("llmhub_ingest_batch_duration_seconds_count", ())] == 2
    assert s[("llmhub_ingest_batch_duration_seconds_sum", ())] == pytest.approx(3.4)
    assert s[("llmhub_ingest_batch_duration_seconds_bucket", (("le", "0.5"),))] == 1
    assert s[("llmhub_ingest_batch_duration_seconds_bucket", (("le", "2.5"),))] == 1
    assert s[("llmhub_ingest_batch_duration_seconds_bucket", (("le", "5.0"),))] == 2
    assert s[("llmhub_ingest_batch_duration_seconds_bucket", (("le", "+Inf"),))] == 2
    assert s[("llmhub_ingest_rows_per_second", ())] == pytest.approx(120 / 3.0)
    lag = "llmhub_ingest_consumer_lag_messages"
    assert s[(lag, (("partition", "0"), ("topic", "llm.telemetry")))] == 7
    assert s[(lag, (("partition", "1"), ("topic", "llm.telemetry")))] == 0
    assert s[("llmhub_ingest_runs_total", ())] == 1
    assert s[("llmhub_ingest_last_run_timestamp_seconds", ())] == 1_700_000_010.0
    assert s[("llmhub_ingest_last_batch_timestamp_seconds", ())] == 1_700_000_000.0
    # Topics with no traffic yet still have a zero series, so rate() and the alerts see them.
    assert s[("llmhub_ingest_records_in_total", (("topic", "llm.security"),))] == 0


def test_finish_counts_what_no_batch_callback_reported() -> None:
    # A run without on_batch (a caller that only reports at the end): its report alone counts.
    metrics = IngestMetrics(TABLE_TOPICS)
    observe = metrics.start_run()
    observe.finish(_report(50, 1, {("llm.telemetry", "internal"): 2}, 3))
    s = _samples(metrics)
    assert s[("llmhub_ingest_records_in_total", (("topic", "llm.telemetry"),))] == 53
    assert s[("llmhub_ingest_batch_duration_seconds_count", ())] == 0


def test_two_runs_add_up() -> None:
    metrics = IngestMetrics(TABLE_TOPICS)
    for _ in range(2):
        observe = metrics.start_run()
        report = _report(10, 0, {}, 1)
        observe(report)
        observe.finish(report)
    assert metrics.totals.records_out == {"llm_requests": 20}
    assert metrics.totals.runs == 2


def test_every_exported_family_is_listed() -> None:
    names = {family.name for family in IngestMetrics(TABLE_TOPICS).collect()}
    assert names == set(METRIC_NAMES)
    text = generate_latest(IngestMetrics(TABLE_TOPICS).registry()).decode()
    sample_names = {
        sample.name for f in text_string_to_metric_families(text) for sample in f.samples
    }
    assert sample_names - {n for n in sample_names if n.endswith("_created")} <= exposed_names()


def test_textfile_keeps_counters_monotonic_across_runs(tmp_path: Path) -> None:
    # Each Dagster run is a new process: the second run's textfile must continue the first's.
    settings = Settings(stack_dir=tmp_path)
    sink = TextfileSink(tmp_path / "metrics")
    for written in (30, 12):
        metrics = sink.load(settings)
        observe = metrics.start_run()
        report = _report(written, 0, {("llm.telemetry", "schema"): 1}, 1)
        observe(report)
        observe.finish(report)
        sink.save(metrics)
    families = {f.name: f for f in text_string_to_metric_families(sink.textfile.read_text())}
    out = {
        s.labels["table"]: s.value
        for s in families["llmhub_ingest_records_out"].samples
        if s.name.endswith("_total")
    }
    assert out["llm_requests"] == 42
    runs = [s.value for s in families["llmhub_ingest_runs"].samples if s.name.endswith("_total")]
    assert runs == [2]
    # No staging files left behind for node_exporter to trip over.
    assert set(sink.directory.iterdir()) == {sink.state_file, sink.textfile}


def test_an_unreadable_state_starts_from_zero(tmp_path: Path) -> None:
    # A truncated state file (disk full) must not stop the ingestion runs that read it.
    sink = TextfileSink(tmp_path)
    sink.state_file.write_text('{"records_in": {"llm.telemetry"')
    metrics = sink.load(Settings(stack_dir=tmp_path))
    assert metrics.totals == IngestTotals()
    sink.save(metrics)
    assert IngestTotals.from_json(sink.state_file.read_text()) == IngestTotals()


def test_state_with_other_bucket_bounds_restarts_the_histogram() -> None:
    totals = IngestTotals(batch_buckets=[1, 2], batch_sum_s=9.0, runs=4)
    again = IngestTotals.from_json(totals.to_json())
    assert again.runs == 4
    assert sum(again.batch_buckets) == 0 and again.batch_sum_s == 0.0


def test_serve_exposes_the_metrics_over_http(unused_port: int) -> None:
    metrics = IngestMetrics(TABLE_TOPICS)
    observe = metrics.start_run()
    observe(_report(3, 0, {}, 1))
    serve(metrics, unused_port)
    with urllib.request.urlopen(f"http://127.0.0.1:{unused_port}/metrics", timeout=5) as response:
        body = response.read().decode()
    assert 'llmhub_ingest_records_out_total{table="llm_requests",topic="llm.telemetry"} 3.0' in body


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
