"""Kafka -> TimescaleDB raw hypertables, one bounded micro-batch per run.

One multi-asset reads all five topics because the stored offsets of every partition commit in the
same transaction as the rows; it materialises each raw table it wrote and ``raw.dead_letter``.
"""

import dagster as dg
from pydantic import Field

from assets import groups
from assets.resources import HubResource
from llmhub.contract.topics import TOPICS
from llmhub.ingest.engine import Ingestor, IngestReport
from llmhub.ingest.metrics import TextfileSink

KINDS = {"kafka", "timescaledb"}
DEAD_LETTER_KEY = dg.AssetKey(["raw", "dead_letter"])
DEAD_LETTER_RATE_CHECK = "dead_letter_rate"
CONSUMER_LAG_CHECK = "consumer_lag"


class IngestionConfig(dg.Config):
    """How much one run may read."""

    max_batches: int = Field(20, description="Stop after this many batches (bounds run time).")
    batch_max_records: int = Field(50_000, description="Messages per transaction (bounds memory).")
    max_dead_letter_rate: float = Field(
        0.05, description="Blocking check: dead-lettered / read per topic must stay below this."
    )
    max_lag_messages: int = Field(
        1_000_000, description="Check: messages left unread per topic after the run."
    )


def raw_table_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["raw", table])


RAW_SPECS = [
    dg.AssetSpec(
        raw_table_key(spec.table),
        description=f"Raw `{spec.family}` events from Kafka topic `{spec.topic}` "
        f"({spec.source_module}); one row per accepted event, grain event_id, TimescaleDB "
        "hypertable partitioned on occurred_at in 1-day chunks.",
        group_name=groups.INGESTION,
        kinds=KINDS,
        metadata={"topic": spec.topic, "table": f"raw.{spec.table}"},
        skippable=True,
    )
    for spec in TOPICS
]
DEAD_LETTER_SPEC = dg.AssetSpec(
    DEAD_LETTER_KEY,
    description="Messages that could not be stored, byte for byte, with the error class and "
    "reason; grain (topic, partition, offset).",
    group_name=groups.INGESTION,
    kinds=KINDS,
    skippable=True,
)
CHECK_SPECS = [
    check
    for spec in TOPICS
    for check in (
        dg.AssetCheckSpec(
            DEAD_LETTER_RATE_CHECK,
            asset=raw_table_key(spec.table),
            blocking=True,
            description=f"Share of {spec.topic} messages dead-lettered in the run is under the "
            "threshold; blocks downstream marts when producers send garbage.",
        ),
        dg.AssetCheckSpec(
            CONSUMER_LAG_CHECK,
            asset=raw_table_key(spec.table),
            description=f"Messages of {spec.topic} left unread after the run are under the "
            "threshold.",
        ),
    )
]


def _table_metadata(report: IngestReport, topic: str, table: str) -> dict[str, float | int]:
    return {
        "rows_written": report.rows_written.get(table, 0),
        "duplicates_skipped": report.duplicates_skipped.get(table, 0),
        "rows_dead_lettered": report.dead_lettered.get(topic, 0),
        "consumer_lag": report.lag_by_topic().get(topic, 0),
        "batch_duration_s": round(report.duration_s, 3),
        "throughput_events_per_s": round(report.events_per_s, 1),
    }


@dg.multi_asset(
    name="kafka_ingestion",
    specs=[*RAW_SPECS, DEAD_LETTER_SPEC],
    check_specs=CHECK_SPECS,
    can_subset=False,
)
def kafka_ingestion(context: dg.AssetExecutionContext, config: IngestionConfig, hub: HubResource):
    """Read one bounded micro-batch from every contract topic into the raw hypertables.

    Exactly once: rows, dead letters and the next offsets commit in one transaction per batch;
    partitions are claimed with advisory locks so overlapping runs skip what another reads.
    The run's figures are also added to the Prometheus textfile in ``LLMHUB_METRICS_DIR``.
    """
    settings = hub.settings()
    ingestor = Ingestor(settings, batch_max_records=config.batch_max_records)
    sink = TextfileSink(settings.metrics_dir)
    metrics = sink.load(settings)
    observe = metrics.start_run()

    def log_batch(report: IngestReport) -> None:
        observe(report)
        context.log.info(f"batch {report.batches}: {report.messages} messages so far")

    report = ingestor.run(until_caught_up=True, max_batches=config.max_batches, on_batch=log_batch)
    observe.finish(report)
    try:
        sink.save(metrics)
    except OSError as exc:
        # The batches are committed: a metrics directory that cannot be written must not fail
        # the run (the IngestNotRunning alert notices the missing updates).
        context.log.warning(f"Prometheus textfile not written to {sink.directory}: {exc}")
    for spec in TOPICS:
        topic = settings.topic(spec.topic)
        written = report.rows_written.get(spec.table, 0) + report.duplicates_skipped.get(
            spec.table, 0
        )
        dead = report.dead_lettered.get(topic, 0)
        yield dg.MaterializeResult(
            asset_key=raw_table_key(spec.table),
            metadata=_table_metadata(report, topic, spec.table),
        )
        rate = dead / (written + dead) if written + dead else 0.0
        yield dg.AssetCheckResult(
            asset_key=raw_table_key(spec.table),
            check_name=DEAD_LETTER_RATE_CHECK,
            passed=rate <= config.max_dead_letter_rate,
            metadata={
                "dead_letter_rate": rate,
                "dead_lettered": dead,
                "read": written + dead,
                "threshold": config.max_dead_letter_rate,
            },
        )
        lag = report.lag_by_topic().get(topic, 0)
        yield dg.AssetCheckResult(
            asset_key=raw_table_key(spec.table),
            check_name=CONSUMER_LAG_CHECK,
            passed=lag <= config.max_lag_messages,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "lag_messages": lag,
                "threshold": config.max_lag_messages,
                "partitions_claimed": len(
                    [p for p in report.partitions if p.startswith(f"{topic}[")]
                ),
            },
        )
    yield dg.MaterializeResult(
        asset_key=DEAD_LETTER_KEY,
        metadata={
            "rows_dead_lettered": sum(report.dead_lettered.values()),
            "by_topic": dg.MetadataValue.json(report.dead_lettered),
            "by_class": dg.MetadataValue.json(
                {f"{topic} {cls}": n for (topic, cls), n in report.dead_letter_classes.items()}
            ),
            "messages_read": report.messages,
            "partitions_claimed": len(report.partitions),
            "partitions_held_elsewhere": dg.MetadataValue.json(report.skipped_partitions),
            "prometheus_textfile": dg.MetadataValue.path(str(sink.textfile)),
        },
    )
