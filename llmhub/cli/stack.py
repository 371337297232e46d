"""``llmhub stack``: the local dev stack."""

from __future__ import annotations

from typing import Annotated

import typer

from llmhub.cli.output import console, hub_settings

stack_app = typer.Typer(
    help="The local dev stack (TimescaleDB, Kafka-protocol broker, MLflow, Prometheus)."
)


@stack_app.command("up")
def stack_up() -> None:
    """Start TimescaleDB and the broker (unless pointed elsewhere), migrate, create topics."""
    from llmhub.stack.local import up

    report = up(hub_settings())
    for note in report.notes:
        console.print(f"[yellow]{note}")
    console.print(
        f"[green]stack up[/] database={report.database} kafka={report.kafka} mlflow={report.mlflow}"
        f" prometheus={report.prometheus}"
        f" api={report.api}"
    )


@stack_app.command("down")
def stack_down() -> None:
    """Stop the local services (the database files are kept)."""
    from llmhub.stack.local import down

    down(hub_settings())
    console.print("stack down")


@stack_app.command("status")
def stack_status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Same as ``llmhub status``."""
    from llmhub.cli.status import status

    status(as_json)
