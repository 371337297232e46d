"""Sending producer messages to Kafka, and the ``Message`` record every producer yields.

The synthetic generator, the trace replays and ``produce_file`` all yield ``Message`` objects
whose values are already serialised, so this module only moves bytes: it never validates or
re-encodes an event.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaProducer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

log = logging.getLogger(__name__)

# Large batches amortise the per-request overhead of kafka-python's pure-Python sender; a short
# linger still bounds the latency a live (paced) replay adds.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "linger_ms": 5,
    "batch_size": 262_144,
    "compression_type": None,
}

_READ_CHUNK_BYTES = 1 << 20
_PROGRESS_STEP = 1_000


@dataclass(frozen=True, slots=True)
class Message:
    """One Kafka record ready to send: ``value`` is the serialised event, sent byte for byte.

    ``key`` is the tenant id (so one tenant's events stay ordered in one partition) or None;
    ``timestamp_ms`` is the record's CreateTime, or None to let the producer stamp the send time.
    """

    topic: str
    key: bytes | None
    value: bytes
    timestamp_ms: int | None = None


class DeliveryError(RuntimeError):
    """The broker did not acknowledge at least one message."""


def event_message(topic: str, event: Mapping[str, Any], timestamp_ms: int | None = None) -> Message:
    """Serialise one event dict with orjson into a ``Message`` keyed by its ``tenant_id``.

    Args:
        topic: Destination topic.
        event: The event (envelope with ``body``); ``tenant_id`` becomes the key when present.
        timestamp_ms: Record CreateTime in epoch milliseconds, or None.

    Returns:
        The message; nothing is validated against the contract.
    """
    tenant = event.get("tenant_id")
    key = str(tenant).encode() if tenant is not None else None
    # orjson's result holds a ~8 KiB buffer whatever its length; copy it to its real size.
    return Message(topic, key, memoryview(orjson.dumps(event)).tobytes(), timestamp_ms)


def make_producer(bootstrap: str, **overrides: Any) -> KafkaProducer:
    """Build a KafkaProducer tuned for bulk sends of pre-serialised messages.

    ``acks="all"`` and no compression by default. Idempotence is kafka-python's default
    (enabled), and is deliberately not forced: forcing it makes the client raise against a
    broker older than 0.11, whereas the default only logs a warning and carries on.

    Args:
        bootstrap: Comma-separated ``host:port`` list.
        **overrides: Any ``KafkaProducer`` setting, applied over the defaults.

    Returns:
        A connected producer; the caller closes it.
    """
    config = {**PRODUCER_DEFAULTS, **overrides}
    return KafkaProducer(bootstrap_servers=bootstrap, **config)


def send_all(producer: KafkaProducer, messages: Iterable[Message], progress: bool = False) -> int:
    """Send every message, flush, and return how many were sent.

    Stops sending at the first failed delivery reported so far and raises; after the final
    flush any failure raises too, so a return value means every message was acknowledged.

    Args:
        producer: A producer, e.g. from ``make_producer``.
        messages: The messages; a sized collection gets a bar with a known total.
        progress: Show a ``rich`` progress bar on stderr.

    Returns:
        The number of messages sent and acknowledged.

    Raises:
        DeliveryError: A message was not acknowledged (the cause is chained).
    """
    failures: list[BaseException] = []
    on_error = failures.append
    sent = 0
    total = len(messages) if isinstance(messages, Sized) else None
    bar = _progress_bar() if progress else None
    task = bar.add_task("sending", total=total) if bar is not None else None
    try:
        if bar is not None:
            bar.start()
        for message in messages:
            producer.send(
                message.topic,
                value=message.value,
                key=message.key,
                timestamp_ms=message.timestamp_ms,
            ).add_errback(on_error)
            sent += 1
            if sent % _PROGRESS_STEP == 0:
                if failures:
                    break
                if bar is not None and task is not None:
                    bar.update(task, completed=sent)
        producer.flush()
        if bar is not None and task is not None:
            bar.update(task, completed=sent)
    finally:
        if bar is not None:
            bar.stop()
    if failures:
        raise DeliveryError(
            f"{len(failures)} of {sent} messages were not delivered: {failures[0]!r}"
        ) from failures[0]
    log.info("sent %d messages", sent)
    return sent


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(file=sys.stderr),
        transient=False,
    )


def produce_file(topic: str, path: Path) -> Iterator[Message]:
    """Yield each line of ``path`` as one message value, byte for byte.

    Lines are split on ``b"\\n"`` only (a ``\\r`` stays in the value); empty lines inside the file
    become empty values, and only the empty string after a final newline is skipped. Nothing is
    decoded or validated, so malformed input reaches the broker as it is (useful to exercise the
    dead-letter path). The file is streamed, never read whole.

    Args:
        topic: Destination topic.
        path: The file to send.

    Returns:
        An iterator of messages with no key and no timestamp.
    """
    pending = b""
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_READ_CHUNK_BYTES):
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            for line in lines:
                yield Message(topic, None, line)
    if pending:
        yield Message(topic, None, pending)
