"""``llmhub export``: a mart or raw table to CSV, JSON Lines or Parquet."""

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from llmhub.cli.output import console, hub_settings

export_app = typer.Typer()


@export_app.command("export")
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
    from llmhub.mart_export import ExportError, PostgresCatalog, export, parse_time, plan_export
    from llmhub.mart_export import resolve_format as export_format

    try:
        chosen = export_format(out, fmt)
        start = parse_time(since, "--since") if since else None
        end = parse_time(until, "--until") if until else None
        with connect(hub_settings()) as conn:
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
