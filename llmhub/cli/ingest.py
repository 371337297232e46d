"""``llmhub ingest``: Kafka micro-batches into the raw tables."""

import json
import logging
import signal
import time
from typing import Annotated

import typer

from llmhub.cli.output import console, hub_settings, out

ingest_app = typer.Typer()


@ingest_app.command("ingest")
def ingest(
    until_caught_up: Annotated[
        bool, typer.Option(help="Stop once the end offsets seen at start are reached.")
    ] = True,
    max_batches: Annotated[int | None, typer.Option(help="Stop after N batches.")] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Decoder processes on this machine (default: one per core; 0: decode in the "
            "ingesting process). Partitions are not split among them: one process reads and "
            "writes, the decoders share every partition's messages."
        ),
    ] = None,
    lanes: Annotated[
        int,
        typer.Option(
            help="Partition groups written in parallel, each over its own database connection "
            "(default 1). A partition and its offsets stay in one lane, so each transaction is "
            "still atomic for the partitions it writes. Worth it when the cores outnumber what "
            "one server process parsing COPY can keep busy."
        ),
    ] = 1,
    worker_index: Annotated[int, typer.Option(help="This machine's share (0-based).")] = 0,
    worker_count: Annotated[int, typer.Option(help="Machines splitting the partitions.")] = 1,
    topic: Annotated[list[str] | None, typer.Option(help="Topics (default: all).")] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus metrics on this port (/metrics).")
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Address the metrics server binds.")] = (
        "127.0.0.1"
    ),
    follow: Annotated[
        bool, typer.Option(help="Keep ingesting: a new run every --interval seconds, until Ctrl-C.")
    ] = False,
    interval: Annotated[float, typer.Option(help="Seconds between runs with --follow.")] = 5.0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Read Kafka micro-batches into the raw tables (the Dagster asset's code path)."""
    import os

    from llmhub.ingest.decode import DecoderPool
    from llmhub.ingest.engine import Ingestor, IngestReport
    from llmhub.ingest.metrics import IngestMetrics, serve

    settings = hub_settings()
    decoders = (os.cpu_count() or 1) if workers is None else workers
    if decoders < 0:
        raise typer.BadParameter("--workers must be 0 or more")
    if lanes < 1:
        raise typer.BadParameter("--lanes must be 1 or more")
    topics = topic or None
    # Started before the metrics server's thread, so that it can fork; shared by every run.
    pool = DecoderPool(settings, Ingestor.topic_names(topics), decoders) if decoders else None
    metrics = IngestMetrics.for_settings(settings)
    if metrics_port is not None:
        serve(metrics, metrics_port, metrics_host)
        console.log(f"metrics on http://{metrics_host}:{metrics_port}/metrics")

    def one_run() -> IngestReport:
        observe = metrics.start_run()
        ingestor = Ingestor(settings, topics, worker_index, worker_count, pool=pool, lanes=lanes)

        def progress(r: IngestReport) -> None:
            observe(r)
            console.log(f"batch {r.batches}: {r.messages} messages")

        report = ingestor.run(until_caught_up, max_batches, on_batch=progress)
        observe.finish(report)
        return report

    try:
        report = _runs(one_run, follow, interval)
    finally:
        if pool is not None:
            pool.close()
    summary = {
        "messages": report.messages,
        "rows_written": report.rows_written,
        "duplicates_skipped": report.duplicates_skipped,
        "dead_lettered": report.dead_lettered,
        "batches": report.batches,
        "duration_s": round(report.duration_s, 3),
        "events_per_s": round(report.events_per_s, 1),
        "partitions": report.partitions,
        "skipped_partitions": report.skipped_partitions,
        "lag": report.lag,
        "stage_s": {stage: round(seconds, 3) for stage, seconds in report.stage_s.items()},
        "batches_split": report.batches_split,
        "lanes": report.lanes,
    }
    if as_json:
        out.print_json(json.dumps(summary))
    else:
        console.print(summary)


def _runs(one_run, follow: bool, interval: float):  # type: ignore[no-untyped-def]
    """One run, or with ``follow`` a run every ``interval`` seconds until Ctrl-C (the last
    run's report)."""
    from llmhub.ingest.engine import IngestReport

    if not follow:
        return one_run()
    # A service stops on SIGTERM (systemd, container runtimes) as on Ctrl-C, between or inside
    # runs (an unfinished batch is rolled back). Installed explicitly: a process started in the
    # background by a shell inherits SIGINT ignored, and Python then leaves it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    report = IngestReport()
    try:
        while True:
            try:
                report = one_run()
            except Exception:
                # A long-running ingester outlives a failed run (database or broker away): the
                # stalled-consumer alert sees the runs stop, the next one retries.
                logging.getLogger("llmhub.ingest").exception("ingestion run failed")
            time.sleep(interval)
    except KeyboardInterrupt:
        console.log("stopped")
    return report
