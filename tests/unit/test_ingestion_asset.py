"""The kafka_ingestion multi-asset with a faked ingester: metadata and its checks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from assets.ingestion.raw_tables import (
    CONSUMER_LAG_CHECK,
    DEAD_LETTER_KEY,
    DEAD_LETTER_RATE_CHECK,
    kafka_ingestion,
    raw_table_key,
)
from assets.resources import HubResource
from llmhub.contract.topics import TOPICS
from llmhub.ingest.engine import Ingestor, IngestReport
from llmhub.ingest.metrics import TEXTFILE_NAME

PREFIX = "t0000.."
TELEMETRY_TOPIC = f"{PREFIX}llm.telemetry"
TABLE_METADATA = {
    "rows_written",
    "duplicates_skipped",
    "rows_dead_lettered",
    "consumer_lag",
    "batch_duration_s",
    "throughput_events_per_s",
}


def _report(dead_telemetry: int, lag: int = 0) -> IngestReport:
    return IngestReport(
        rows_written={"llm_requests": 90, "cost_records": 4},
        duplicates_skipped={"llm_requests": 10},
        dead_lettered={TELEMETRY_TOPIC: dead_telemetry} if dead_telemetry else {},
        messages=104 + dead_telemetry,
        batches=2,
        duration_s=2.0,
        partitions=[f"{TELEMETRY_TOPIC}[0]", f"{TELEMETRY_TOPIC}[1]", f"{PREFIX}llm.cost[0]"],
        lag={f"{TELEMETRY_TOPIC}[0]": lag, f"{TELEMETRY_TOPIC}[1]": 0},
    )


@dataclass
class FakeRun:
    """Stands in for ``Ingestor.run``: returns ``report`` and records how it was called."""

    report: IngestReport | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def fake_run(monkeypatch: pytest.MonkeyPatch) -> FakeRun:
    fake = FakeRun()

    def run(
        self: Ingestor,
        until_caught_up: bool = True,
        max_batches: int | None = None,
        on_batch: Callable[[IngestReport], None] | None = None,
    ) -> IngestReport:
        assert fake.report is not None
        fake.calls.append(
            {"topics": self.topics, "max_batches": max_batches, "batch": self.batch_max_records}
        )
        if on_batch is not None:
            on_batch(fake.report)
        return fake.report

    monkeypatch.setattr(Ingestor, "run", run)
    return fake


def _materialize(config: dict[str, Any] | None = None) -> dg.ExecuteInJobResult:
    hub = HubResource(
        database_url="postgresql://nobody@127.0.0.1:1/none",
        kafka_bootstrap="127.0.0.1:1",
        topic_prefix=PREFIX,
        consumer_group="unit",
    )
    return dg.materialize(
        [kafka_ingestion],
        resources={"hub": hub},
        run_config={"ops": {"kafka_ingestion": {"config": config or {}}}},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def _metadata(result: dg.ExecuteInJobResult) -> dict[dg.AssetKey, dict[str, Any]]:
    return {
        m.asset_key: {k: v.value for k, v in m.metadata.items()}
        for m in result.asset_materializations_for_node("kafka_ingestion")
    }


def _checks(result: dg.ExecuteInJobResult) -> dict[tuple[str, str], Any]:
    return {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}


def test_materializes_every_raw_table_and_the_dead_letter_table(
    fake_run: FakeRun,
) -> None:
    fake_run.report = _report(dead_telemetry=0)
    result = _materialize({"max_batches": 3, "batch_max_records": 777})
    assert result.success
    metadata = _metadata(result)
    assert set(metadata) == {raw_table_key(s.table) for s in TOPICS} | {DEAD_LETTER_KEY}
    for spec in TOPICS:
        assert set(metadata[raw_table_key(spec.table)]) == TABLE_METADATA
    telemetry = metadata[raw_table_key("llm_requests")]
    assert (telemetry["rows_written"], telemetry["duplicates_skipped"]) == (90, 10)
    assert telemetry["throughput_events_per_s"] == pytest.approx(52.0)
    assert metadata[raw_table_key("cost_records")]["rows_written"] == 4
    assert metadata[DEAD_LETTER_KEY]["rows_dead_lettered"] == 0
    call = fake_run.calls[0]
    assert (call["max_batches"], call["batch"]) == (3, 777)
    assert call["topics"][0] == TELEMETRY_TOPIC


@pytest.mark.parametrize(
    ("dead", "threshold", "passed"),
    [(0, 0.05, True), (5, 0.05, True), (6, 0.05, False), (100, 0.5, True), (101, 0.5, False)],
)
def test_dead_letter_rate_check_blocks_above_the_threshold(
    fake_run: FakeRun, dead: int, threshold: float, passed: bool
) -> None:
    # 100 telemetry messages stored or skipped as duplicates, plus ``dead`` dead-lettered.
    fake_run.report = _report(dead_telemetry=dead)
    result = _materialize({"max_dead_letter_rate": threshold})
    checks = _checks(result)
    evaluation = checks[("llm_requests", DEAD_LETTER_RATE_CHECK)]
    assert evaluation.passed is passed
    assert evaluation.metadata["dead_lettered"].value == dead
    assert evaluation.metadata["read"].value == 100 + dead
    assert evaluation.metadata["dead_letter_rate"].value == pytest.approx(dead / (100 + dead))
    assert all(checks[(s.table, DEAD_LETTER_RATE_CHECK)].passed for s in TOPICS[1:])
    # The check is blocking: a failure fails the run, so downstream assets do not run.
    assert result.success is passed
    dead_letters = _metadata(result)[DEAD_LETTER_KEY]
    assert dead_letters["rows_dead_lettered"] == dead


def test_tables_with_nothing_read_pass_the_rate_check(fake_run: FakeRun) -> None:
    fake_run.report = _report(dead_telemetry=0)
    evaluation = _checks(_materialize())[("registry_events", DEAD_LETTER_RATE_CHECK)]
    assert evaluation.passed
    assert evaluation.metadata["read"].value == 0


@pytest.mark.parametrize(("lag", "passed"), [(10, True), (11, False)])
def test_consumer_lag_check_warns_but_does_not_fail_the_run(
    fake_run: FakeRun, lag: int, passed: bool
) -> None:
    fake_run.report = _report(dead_telemetry=0, lag=lag)
    result = _materialize({"max_lag_messages": 10})
    evaluation = _checks(result)[("llm_requests", CONSUMER_LAG_CHECK)]
    assert evaluation.passed is passed
    assert evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["lag_messages"].value == lag
    assert evaluation.metadata["partitions_claimed"].value == 2
    assert result.success
    assert _metadata(result)[raw_table_key("llm_requests")]["consumer_lag"] == lag


def test_each_run_adds_its_figures_to_the_prometheus_textfile(
    fake_run: FakeRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMHUB_METRICS_DIR", str(tmp_path))
    fake_run.report = _report(dead_telemetry=3)
    fake_run.report.dead_letter_classes = {(TELEMETRY_TOPIC, "schema"): 3}
    for _ in range(2):
        assert _materialize().success
    textfile = tmp_path / TEXTFILE_NAME
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(textfile.read_text())
        for s in family.samples
    }
    # Two runs of the same report: counters doubled, lag as of the last run.
    assert samples[("llmhub_ingest_records_in_total", (("topic", TELEMETRY_TOPIC),))] == 2 * 103
    table = (("table", "llm_requests"), ("topic", TELEMETRY_TOPIC))
    assert samples[("llmhub_ingest_records_out_total", table)] == 180
    dead = (("error_class", "schema"), ("topic", TELEMETRY_TOPIC))
    assert samples[("llmhub_ingest_dead_letters_total", dead)] == 6
    assert samples[("llmhub_ingest_runs_total", ())] == 2
    metadata = _metadata(_materialize())[DEAD_LETTER_KEY]
    assert metadata["prometheus_textfile"] == str(textfile)
    assert metadata["by_class"] == {f"{TELEMETRY_TOPIC} schema": 3}
