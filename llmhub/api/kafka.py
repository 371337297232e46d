"""Sending accepted events to Kafka and answering only once the broker acknowledged them.

librdkafka (confluent-kafka) rather than kafka-python: the pure-Python sender tops out near
30k small messages/s here, librdkafka at about 100k/s (measured), and the OTLP endpoint must
keep up with exporters' batches. The settings are ``produce file``'s: ``acks=all``, same
topic, value bytes, no key, no timestamp of ours (see llmhub/producers/sink.py).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, Producer

from llmhub.producers.sink import PRODUCER_DEFAULTS, DeliveryError, Message

# Messages librdkafka may hold unsent; past it the API answers 503 instead of queueing more.
QUEUE_LIMIT = 500_000


class Overloaded(RuntimeError):
    """The producer's queue is full: the broker is not keeping up."""


class _Batch:
    __slots__ = ("errors", "future", "loop", "remaining")

    def __init__(self, n: int, future: asyncio.Future[None], loop: asyncio.AbstractEventLoop):
        self.remaining = n
        self.errors: list[KafkaError] = []
        self.future = future
        self.loop = loop

    def on_delivery(self, err: KafkaError | None, _msg: Any) -> None:
        # Called on the poll thread only, one at a time.
        if err is not None:
            self.errors.append(err)
        self.remaining -= 1
        if self.remaining == 0:
            self.loop.call_soon_threadsafe(self._finish)

    def _finish(self) -> None:
        if self.future.done():
            return
        if self.errors:
            self.future.set_exception(
                DeliveryError(f"{len(self.errors)} messages not delivered: {self.errors[0]}")
            )
        else:
            self.future.set_result(None)


class EventSender:
    """One librdkafka producer per API process, polled by a background thread."""

    def __init__(self, bootstrap: str, **overrides: Any) -> None:
        config = {
            "bootstrap.servers": bootstrap,
            "acks": PRODUCER_DEFAULTS["acks"],
            "linger.ms": PRODUCER_DEFAULTS["linger_ms"],
            "batch.size": PRODUCER_DEFAULTS["batch_size"],
            "queue.buffering.max.messages": QUEUE_LIMIT,
            "message.timeout.ms": 30_000,
            **overrides,
        }
        self._producer = Producer(config)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="kafka-poll", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    async def send(self, messages: Sequence[Message]) -> None:
        """Send ``messages`` and return when every one is acknowledged.

        Raises:
            Overloaded: the queue cannot take the batch (nothing of it was sent).
            DeliveryError: the broker did not acknowledge at least one message.
        """
        if not messages:
            return
        if len(self._producer) + len(messages) > QUEUE_LIMIT:
            raise Overloaded(f"{len(self._producer)} messages already waiting for the broker")
        loop = asyncio.get_running_loop()
        batch = _Batch(len(messages), loop.create_future(), loop)
        produce = self._producer.produce
        callback = batch.on_delivery
        for m in messages:
            if m.timestamp_ms is None:
                produce(m.topic, m.value, m.key, on_delivery=callback)
            else:
                produce(m.topic, m.value, m.key, on_delivery=callback, timestamp=m.timestamp_ms)
        await batch.future

    async def send_values(self, topic: str, values: Sequence[bytes]) -> None:
        """``send`` for values without key or timestamp to one topic (the OTLP path: no
        ``Message`` per span).

        Raises:
            Overloaded: the queue cannot take the batch (nothing of it was sent).
            DeliveryError: the broker did not acknowledge at least one message.
        """
        if not values:
            return
        if len(self._producer) + len(values) > QUEUE_LIMIT:
            raise Overloaded(f"{len(self._producer)} messages already waiting for the broker")
        loop = asyncio.get_running_loop()
        batch = _Batch(len(values), loop.create_future(), loop)
        produce = self._producer.produce
        callback = batch.on_delivery
        for value in values:
            produce(topic, value, on_delivery=callback)
        await batch.future

    def queued(self) -> int:
        return len(self._producer)

    def close(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self._producer.flush(timeout_s)
