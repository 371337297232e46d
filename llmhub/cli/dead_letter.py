"""``llmhub dead-letter``: the messages ingestion could not store, kept with their reasons."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

import typer

from llmhub.cli.output import console, hub_settings, out

dead_letter_app = typer.Typer(
    help="Dead letters: messages kept with the reason they were not stored.", no_args_is_help=True
)


@dead_letter_app.command("replay")
def replay(
    error_class: Annotated[
        list[str] | None,
        typer.Option("--class", help="Only dead letters of this class (repeatable)."),
    ] = None,
    topic: Annotated[
        list[str] | None, typer.Option(help="Only this contract topic, e.g. llm.cost (repeatable).")
    ] = None,
    since: Annotated[
        datetime | None, typer.Option(help="Only dead letters received at or after this time.")
    ] = None,
    until: Annotated[
        datetime | None, typer.Option(help="Only dead letters received before this time.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would be stored; change nothing.")
    ] = False,
) -> None:
    """Re-ingest dead letters through the current contract (after a fix). Idempotent: replayed
    dead letters are marked, not deleted, and never stored twice. Prints a JSON summary."""
    from llmhub.contract.topics import BY_TOPIC
    from llmhub.db import connect
    from llmhub.ingest.replay import ReplayFilter, replay_dead_letters

    unknown = [t for t in topic or () if t not in BY_TOPIC]
    if unknown:
        raise typer.BadParameter(f"unknown topics {unknown}; the contract has {sorted(BY_TOPIC)}")
    settings = hub_settings()
    selection = ReplayFilter(tuple(error_class or ()), tuple(topic or ()), since, until)
    with connect(settings, autocommit=True) as conn:
        summary = replay_dead_letters(
            conn,
            settings,
            selection,
            dry_run=dry_run,
            on_chunk=lambda s: console.log(f"{s.selected} dead letters read, {s.stored} stored"),
        )
    out.print_json(json.dumps(summary.to_dict()))
