"""``llmhub retention``: drop raw chunks past their retention."""

from typing import Annotated

import typer

from llmhub.cli.output import console, hub_settings

retention_app = typer.Typer()


@retention_app.command("retention")
def retention(
    dead_letter_days: Annotated[int, typer.Option(help="Keep dead letters this long.")] = 90,
) -> None:
    """Drop raw chunks older than each table's retention (what the Dagster asset runs)."""
    from llmhub.db import connect
    from llmhub.retention import apply_retention

    settings = hub_settings()
    with connect(settings, autocommit=True) as conn:
        for result in apply_retention(conn, settings.retention.days, dead_letter_days):
            console.print(
                f"{result.table}: keep {result.keep_days} d, dropped {result.dropped_chunks}"
            )
