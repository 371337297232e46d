"""A real Prometheus, started by the stack's own code, scrapes a real ingestion run.

Messages (valid and broken) go through the broker into the test database; the run's metrics are
served live (job ``llmhub-ingest``) and written as the Dagster runs write them (textfile served
by node_exporter, job ``llmhub-dagster-ingest``). Prometheus and the exporter run on free
loopback ports with their files under the test's temporary directory, and are stopped after.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from integration.conftest import IsolatedStack, wait_for
from llmhub.ingest.metrics import IngestMetrics, TextfileSink, serve
from llmhub.stack.prometheus import PrometheusStack, binary

pytestmark = pytest.mark.integration

EventFactory = Callable[..., dict[str, Any]]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[PrometheusStack]:
    if binary("prometheus") is None or binary("prometheus-node-exporter") is None:
        message = "prometheus is not installed: `llmhub stack up` installs it"
        if os.environ.get("LLMHUB_REQUIRE_STACK") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    stack = PrometheusStack(
        run_dir=tmp_path / "prometheus",
        metrics_dir=tmp_path / "metrics",
        port=_free_port(),
        ingest_targets=[f"127.0.0.1:{_free_port()}"],
        textfile_port=_free_port(),
        scrape_interval="1s",
    )
    assert stack.start(timeout_s=60)
    try:
        # A second `stack up` finds it running and reloads the configuration instead.
        assert not stack.start(timeout_s=60)
        yield stack
    finally:
        stack.stop()


def _query(prometheus: PrometheusStack, promql: str) -> dict[tuple, float]:
    url = f"{prometheus.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return {
        tuple(sorted(item["metric"].items())): float(item["value"][1])
        for item in body["data"]["result"]
    }


def test_prometheus_scrapes_the_live_ingester_and_the_dagster_textfile(
    stack: IsolatedStack, prometheus: PrometheusStack, event: EventFactory
) -> None:
    good = [json.dumps(event("telemetry")).encode() for _ in range(40)]
    stack.send("llm.telemetry", [*good, b"{not json", b""])
    stack.send("llm.cost", [json.dumps(event("cost")).encode() for _ in range(5)])

    metrics = IngestMetrics.for_settings(stack.settings)
    serve(metrics, int(prometheus.ingest_targets[0].rsplit(":", 1)[1]))
    observe = metrics.start_run()
    from llmhub.ingest.engine import Ingestor

    report = Ingestor(stack.settings).run(on_batch=observe)
    observe.finish(report)
    TextfileSink(prometheus.metrics_dir).save(metrics)
    assert sum(report.rows_written.values()) == 45

    telemetry, cost = stack.topic("llm.telemetry"), stack.topic("llm.cost")
    for job in ("llmhub-ingest", "llmhub-dagster-ingest"):
        read = f'sum by (topic) (llmhub_ingest_records_in_total{{job="{job}"}})'
        expected = {(("topic", telemetry),): 42.0, (("topic", cost),): 5.0}
        wait_for(
            lambda read=read, expected=expected: all(
                _query(prometheus, read).get(k) == v for k, v in expected.items()
            ),
            f"Prometheus to scrape {job}",
        )
        dead = _query(
            prometheus,
            f'sum by (error_class) (llmhub_ingest_dead_letters_total{{job="{job}",'
            f'topic="{telemetry}"}})',
        )
        assert dead == {(("error_class", "invalid_json"),): 1.0, (("error_class", "empty"),): 1.0}
        lag = _query(
            prometheus,
            f'sum(llmhub_ingest_consumer_lag_messages{{job="{job}",topic="{telemetry}"}})',
        )
        assert lag == {(): 0.0}

    with urllib.request.urlopen(f"{prometheus.url}/api/v1/rules", timeout=5) as response:
        groups = json.load(response)["data"]["groups"]
    alerts = {rule["name"] for group in groups for rule in group["rules"]}
    assert {"IngestConsumerLagHigh", "IngestDeadLetterRateHigh", "IngestConsumerStalled"} <= alerts


def _scrape(port: int) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_follow_mode_keeps_ingesting_and_serving_metrics(
    stack: IsolatedStack, event: EventFactory
) -> None:
    port = _free_port()
    proc = stack.start_cli(
        "ingest", "--follow", "--interval", "0.5", "--metrics-port", str(port), name="follow"
    )
    try:
        telemetry = stack.topic("llm.telemetry")
        table = (("table", "llm_requests"), ("topic", telemetry))
        rows = ("llmhub_ingest_records_out_total", table)

        def rows_served(expected: float) -> bool:
            try:
                return _scrape(port).get(rows) == expected
            except OSError:
                return False

        # Messages sent before and after the process started are both picked up.
        stack.send("llm.telemetry", [json.dumps(event("telemetry")).encode() for _ in range(10)])
        wait_for(lambda: rows_served(10.0), "the first messages in the metrics")
        stack.send("llm.telemetry", [json.dumps(event("telemetry")).encode() for _ in range(7)])
        stack.send("llm.telemetry", [b"\xff"])
        wait_for(lambda: rows_served(17.0), "later messages in the metrics")
        samples = _scrape(port)
        dead = (("error_class", "not_utf8"), ("topic", telemetry))
        assert samples[("llmhub_ingest_dead_letters_total", dead)] == 1
        # A run drains the partitions until a poll comes back empty, then the next one starts.
        runs = ("llmhub_ingest_runs_total", ())
        wait_for(lambda: _scrape(port).get(runs, 0) >= 2, "two finished runs")
        assert stack.count("llm_requests") == 17
        assert proc.poll() is None, "the follow mode must keep running"
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
