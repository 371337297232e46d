"""``llmhub``: the command line of the hub (stack, schema, producers, ingestion, status)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from llmhub.config import Settings, load_settings

if TYPE_CHECKING:
    from llmhub.producers.sink import Message

app = typer.Typer(help="LLM Analytics Hub", no_args_is_help=True, add_completion=False)
stack_app = typer.Typer(help="The local dev stack (TimescaleDB + Kafka-protocol broker).")
db_app = typer.Typer(help="Database schema migrations.")
produce_app = typer.Typer(help="Send events to Kafka (demos, tests, benchmarks).")
contract_app = typer.Typer(help="The published event contract.")
offsets_app = typer.Typer(help="Stored Kafka offsets (the exactly-once bookkeeping).")
app.add_typer(stack_app, name="stack")
app.add_typer(db_app, name="db")
app.add_typer(produce_app, name="produce")
app.add_typer(contract_app, name="contract")
app.add_typer(offsets_app, name="offsets")


def _register_ml() -> None:
    # The commands live in their own modules; their heavy imports (torch, prophet) happen only
    # when a command runs.
    from llmhub.cli.ml import ml_app
    from llmhub.cli.ml_forecast import eval_daily, eval_forecast
    from llmhub.cli.ml_incidents import eval_incidents

    ml_app.command("eval-forecast")(eval_forecast)
    ml_app.command("eval-daily")(eval_daily)
    ml_app.command("eval-incidents")(eval_incidents)
    app.add_typer(ml_app, name="ml")


_register_ml()


def _register_forecast() -> None:
    from llmhub.cli.forecast import forecast_app

    app.add_typer(forecast_app, name="forecast")


_register_forecast()

console = Console(stderr=True)
out = Console()


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )
    # kafka-python logs every connection at INFO.
    logging.getLogger("kafka").setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _settings() -> Settings:
    return load_settings()


@stack_app.command("up")
def stack_up() -> None:
    """Start TimescaleDB and the broker (unless pointed elsewhere), migrate, create topics."""
    from llmhub.stack.local import up

    report = up(_settings())
    for note in report.notes:
        console.print(f"[yellow]{note}")
    console.print(
        f"[green]stack up[/] database={report.database} kafka={report.kafka} mlflow={report.mlflow}"
    )


@stack_app.command("down")
def stack_down() -> None:
    """Stop the local services (the database files are kept)."""
    from llmhub.stack.local import down

    down(_settings())
    console.print("stack down")


@stack_app.command("status")
def stack_status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Same as ``llmhub status``."""
    status(as_json)


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply schema migrations (Alembic) up to head; idempotent."""
    from llmhub.db import current_revision, migrate

    settings = _settings()
    migrate(settings)
    console.print(f"schema at revision {current_revision(settings)}")


@contract_app.command("export")
def contract_export(
    check: Annotated[bool, typer.Option(help="Fail if generated files are stale.")] = False,
) -> None:
    """Regenerate the JSON Schemas and docs/event-contract.md from the models."""
    from llmhub.contract.export import export

    stale = export(check=check)
    for path in stale:
        console.print(f"{'stale' if check else 'wrote'} {path}")
    if check and stale:
        raise typer.Exit(1)


class ReplaySource(StrEnum):
    azure2023 = "azure2023"
    ragpulse = "ragpulse"


def _send(messages: Iterable[Message], settings: Settings) -> int:
    """Send to the physical topics (``LLMHUB_TOPIC_PREFIX`` applied), with a progress bar."""
    from llmhub.producers.sink import make_producer, send_all

    if settings.topic_prefix:
        messages = (replace(m, topic=settings.topic(m.topic)) for m in messages)
    producer = make_producer(settings.kafka_bootstrap)
    try:
        return send_all(producer, messages, progress=sys.stderr.isatty())
    finally:
        producer.close()


@produce_app.command("synthetic")
def produce_synthetic(
    events: Annotated[int, typer.Option(help="Telemetry events to generate.")] = 10_000,
    days: Annotated[float, typer.Option(help="Days of history, ending now.")] = 1.0,
    seed: Annotated[int, typer.Option()] = 0,
    incidents: Annotated[bool, typer.Option(help="Inject incidents.")] = True,
    ground_truth: Annotated[
        Path | None, typer.Option(help="Write the injected incidents (JSON) here.")
    ] = None,
) -> None:
    """Realistic traffic for all five topics, with optional injected incidents."""
    from llmhub.producers.synthetic import generate

    traffic = generate(events=events, days=days, seed=seed, incidents=incidents)
    sent = _send(traffic.iter_messages(), _settings())
    if ground_truth is not None:
        traffic.write_ground_truth(ground_truth)
        console.print(f"ground truth: {len(traffic.incidents)} incidents -> {ground_truth}")
    console.print(f"sent {sent} messages")


@produce_app.command("replay")
def produce_replay(
    source: ReplaySource,
    path: Annotated[Path, typer.Argument(exists=True, help="The trace file.")],
    speedup: Annotated[
        float | None, typer.Option(help="Replay at X times real speed (default: at once).")
    ] = None,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Replay a public trace (see ../shared/data/README.md) as telemetry events."""
    from llmhub.producers import replay

    if source is ReplaySource.azure2023:
        messages = replay.replay_azure2023(path, speedup=speedup, seed=seed)
    else:
        messages = replay.replay_ragpulse(path, speedup=speedup, seed=seed)
    console.print(f"sent {_send(messages, _settings())} messages")


@produce_app.command("file")
def produce_file(
    topic: Annotated[str, typer.Option(help="Topic to send to.")],
    path: Annotated[Path, typer.Argument(exists=True)],
) -> None:
    """Send each line of PATH as one message value, byte for byte, unvalidated."""
    from llmhub.producers.sink import produce_file as lines

    console.print(f"sent {_send(lines(topic, path), _settings())} messages")


@app.command()
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

    settings = _settings()
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


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Stack health, rows per raw table, dead letters and consumer lag per partition."""
    from llmhub.status import collect_status

    result = collect_status(_settings())
    if as_json:
        out.print_json(json.dumps(result.to_dict(), default=str))
    else:
        table = Table(title="LLM Analytics Hub")
        table.add_column("what")
        table.add_column("value")
        table.add_row("database", json.dumps(result.database, default=str))
        table.add_row("kafka", json.dumps(result.kafka))
        table.add_row("mlflow", json.dumps(result.mlflow))
        for name, count in result.raw_rows.items():
            table.add_row(f"raw.{name}", f"{count:,}")
        table.add_row("raw.dead_letter", json.dumps(result.dead_letter_by_class))
        table.add_row("lag", json.dumps(result.lag))
        out.print(table)
    if not result.healthy:
        raise typer.Exit(1)


@app.command()
def retention(
    dead_letter_days: Annotated[int, typer.Option(help="Keep dead letters this long.")] = 90,
) -> None:
    """Drop raw chunks older than each table's retention (what the Dagster asset runs)."""
    from llmhub.db import connect
    from llmhub.retention import apply_retention

    settings = _settings()
    with connect(settings, autocommit=True) as conn:
        for result in apply_retention(conn, settings.retention.days, dead_letter_days):
            console.print(
                f"{result.table}: keep {result.keep_days} d, dropped {result.dropped_chunks}"
            )


@app.command("export")
def export_model(
    out: Annotated[Path, typer.Argument(help="File to write (replaced once complete).")],
    model: Annotated[
        str, typer.Option(help="A mart (fct_llm_cost_daily, marts.dim_assets) or raw.<table>.")
    ],
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="csv, json (JSON Lines) or parquet; default: OUT's suffix."),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="ISO-8601, inclusive; without an offset UTC.")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="ISO-8601, exclusive; without an offset UTC.")
    ] = None,
    time_column: Annotated[
        str | None, typer.Option(help="Filter on this column (default: occurred_at or the bucket).")
    ] = None,
    chunk_rows: Annotated[int, typer.Option(help="Rows per fetch / Parquet row group.")] = 10_000,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Stream a mart or raw table to CSV, JSON Lines or Parquet with bounded memory."""
    from rich.markup import escape
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from llmhub.db import connect
    from llmhub.export import ExportError, PostgresCatalog, export, parse_time, plan_export
    from llmhub.export import resolve_format as export_format

    try:
        chosen = export_format(out, fmt)
        start = parse_time(since, "--since") if since else None
        end = parse_time(until, "--until") if until else None
        with connect(_settings()) as conn:
            plan = plan_export(PostgresCatalog(conn), model, start, end, time_column)
            conn.rollback()
            with Progress(
                SpinnerColumn(),
                TextColumn("{task.description}", markup=False),
                TextColumn("{task.fields[rows]:,} rows  {task.fields[mb]:,.1f} MB"),
                TimeElapsedColumn(),
                console=console,
                transient=True,
                disable=not sys.stderr.isatty(),
            ) as progress:
                task = progress.add_task(
                    f"{plan.qualified_name} -> {out}", total=None, rows=0, mb=0.0
                )

                def advance(rows: int, written: int) -> None:
                    progress.update(task, rows=rows, mb=written / 2**20)

                result = export(conn, plan, chosen, out, chunk_rows, on_progress=advance)
    except ExportError as exc:
        console.print(f"[red]export failed:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
    else:
        console.print(
            f"[green]exported[/] {result.rows:,} rows of {result.model} to "
            f"{escape(str(result.path))} ({result.bytes / 2**20:,.1f} MB, {result.seconds:.1f} s)"
        )


@offsets_app.command("reset")
def offsets_reset(
    topic: Annotated[str, typer.Option(help="Topic whose stored offsets to forget.")],
    yes: Annotated[bool, typer.Option("--yes", help="Confirm.")] = False,
) -> None:
    """Forget stored offsets of a topic (after it was recreated); reading restarts at its start."""
    from llmhub.db import connect

    if not yes:
        raise typer.BadParameter(
            "pass --yes: re-reading a topic that still holds ingested data "
            "stores nothing twice only for events with the same event_id"
        )
    settings = _settings()
    with connect(settings, autocommit=True) as conn:
        deleted = conn.execute(
            "delete from raw.kafka_offsets where consumer_group = %s and topic = %s",
            (settings.consumer_group, topic),
        ).rowcount
    console.print(f"forgot {deleted} stored offsets of {topic}")


if __name__ == "__main__":
    app()
