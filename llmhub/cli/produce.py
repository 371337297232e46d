"""``llmhub produce``: send events to Kafka."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from llmhub.cli.output import console, hub_settings
from llmhub.config import Settings

if TYPE_CHECKING:
    from llmhub.producers.sink import Message

produce_app = typer.Typer(help="Send events to Kafka (demos, tests, benchmarks).")


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
    sent = _send(traffic.iter_messages(), hub_settings())
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
    console.print(f"sent {_send(messages, hub_settings())} messages")


@produce_app.command("file")
def produce_file(
    topic: Annotated[str, typer.Option(help="Topic to send to.")],
    path: Annotated[Path, typer.Argument(exists=True)],
) -> None:
    """Send each line of PATH as one message value, byte for byte, unvalidated."""
    from llmhub.producers.sink import produce_file as lines

    console.print(f"sent {_send(lines(topic, path), hub_settings())} messages")


@produce_app.command("scenarios")
def produce_scenarios(
    out: Annotated[Path, typer.Argument(help="Directory for the frames and the ground truth.")],
    seed: Annotated[int, typer.Option(min=0)] = 0,
    days: Annotated[
        int, typer.Option(min=2, help="Days of hourly series; the last one carries the scenarios.")
    ] = 8,
) -> None:
    """Correlated incident scenarios for the correlation engine, with ground truth.

    Writes series, events, forecasts and the stand-in detector's anomalies as Parquet, and
    ground_truth.json naming each scenario's root cause and members (frames, not Kafka
    messages: see ``llmhub.producers.scenarios``).
    """
    from llmhub.producers.scenarios import detect_anomalies, generate_scenarios

    data = generate_scenarios(seed, days=days)
    out.mkdir(parents=True, exist_ok=True)
    data.series.to_parquet(out / "series.parquet", index=False)
    data.events.to_parquet(out / "events.parquet", index=False)
    data.forecasts.to_parquet(out / "forecasts.parquet", index=False)
    detect_anomalies(data.series, data.scenario_start).to_parquet(
        out / "anomalies.parquet", index=False
    )
    data.write_ground_truth(out / "ground_truth.json")
    console.print(
        f"{len(data.scenarios)} scenarios, {len(data.series):,} series-hours, "
        f"{len(data.events):,} events -> {out}"
    )
