"""``llmhub status``: stack health, raw rows, dead letters, lag."""

import json
from typing import Annotated

import typer
from rich.table import Table

from llmhub.cli.output import hub_settings, out

status_app = typer.Typer()


@status_app.command("status")
def status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Stack health, rows per raw table, dead letters and consumer lag per partition."""
    from llmhub.status import collect_status

    result = collect_status(hub_settings())
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
