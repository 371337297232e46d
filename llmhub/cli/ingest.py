"""``llmhub ingest``: Kafka micro-batches into the raw tables."""

import json
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
    workers: Annotated[int, typer.Option(help="Processes on this machine.")] = 1,
    worker_index: Annotated[int, typer.Option(help="This machine's share (0-based).")] = 0,
    worker_count: Annotated[int, typer.Option(help="Machines splitting the partitions.")] = 1,
    topic: Annotated[list[str] | None, typer.Option(help="Topics (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Read Kafka micro-batches into the raw tables (the Dagster asset's code path)."""
    from llmhub.ingest.engine import Ingestor, run_parallel

    settings = hub_settings()
    if workers > 1:
        if worker_count > 1:
            raise typer.BadParameter("use either --workers or --worker-index/--worker-count")
        report = run_parallel(settings, workers, topic, until_caught_up, max_batches)
    else:
        ingestor = Ingestor(settings, topic, worker_index, worker_count)

        def progress(r) -> None:  # type: ignore[no-untyped-def]
            console.log(f"batch {r.batches}: {r.messages} messages")

        report = ingestor.run(until_caught_up, max_batches, on_batch=progress)
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
    }
    if as_json:
        out.print_json(json.dumps(summary))
    else:
        console.print(summary)
