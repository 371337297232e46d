"""``llmhub offsets``: stored Kafka offsets."""

from typing import Annotated

import typer

from llmhub.cli.output import console, hub_settings

offsets_app = typer.Typer(help="Stored Kafka offsets (the exactly-once bookkeeping).")


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
    settings = hub_settings()
    with connect(settings, autocommit=True) as conn:
        deleted = conn.execute(
            "delete from raw.kafka_offsets where consumer_group = %s and topic = %s",
            (settings.consumer_group, topic),
        ).rowcount
    console.print(f"forgot {deleted} stored offsets of {topic}")
