"""Reading Kafka partitions for ingestion, through librdkafka (confluent-kafka).

kafka-python decodes record batches in pure Python: about 12 us of CPU per message with its I/O
thread, a third of all ingestion time (measured with py-spy). librdkafka fetches and decodes in C
on its own threads, at about 220k messages/s into Python here. kafka-python stays for the admin,
status and producer paths, where it is not the bottleneck.

Partitions are assigned explicitly at offsets read from the database; nothing is committed to
Kafka and no consumer group is joined.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import NamedTuple

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, KafkaException
from confluent_kafka import Message as RdMessage
from confluent_kafka import TopicPartition as RdTopicPartition

from llmhub.ingest.writer import Message

log = logging.getLogger(__name__)

METADATA_TIMEOUT_S = 10.0


class TopicPartition(NamedTuple):
    """A topic-partition (equal to kafka-python's namedtuple of the same name, which the
    ingester does not import: kafka-python costs seconds of start-up per run)."""

    topic: str
    partition: int


def as_message(record: RdMessage | Message) -> Message:
    """A librdkafka message as the plain ``Message`` the writer stores for dead letters."""
    if isinstance(record, Message):
        return record
    timestamp_type, timestamp_ms = record.timestamp()
    return Message(
        record.topic(),
        record.partition(),
        record.offset(),
        record.key(),
        record.value(),
        None if timestamp_type == TIMESTAMP_NOT_AVAILABLE else timestamp_ms,
    )


class PartitionReader:
    """Explicitly assigned partitions of one or more topics, polled in bounded batches.

    Args:
        bootstrap: Kafka bootstrap servers.
        client_id: shown in broker logs.
        queued_max_kbytes: librdkafka's prefetch buffer; with the batch size, what bounds memory.
    """

    def __init__(self, bootstrap: str, client_id: str, queued_max_kbytes: int = 65_536) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "client.id": client_id,
                # Required by librdkafka even though no group is joined (assign(), no commits).
                "group.id": client_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": False,
                "fetch.max.bytes": 64 * 1024 * 1024,
                "max.partition.fetch.bytes": 16 * 1024 * 1024,
                "queued.max.messages.kbytes": queued_max_kbytes,
                "check.crcs": True,
            }
        )

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        metadata = self._consumer.list_topics(topic, timeout=METADATA_TIMEOUT_S)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            return None
        return set(found.partitions)

    def watermarks(
        self, tps: list[TopicPartition], cached: bool = False
    ) -> dict[TopicPartition, tuple[int, int]]:
        """(beginning, end) offsets per partition.

        ``cached=False`` asks the broker (ListOffsets); ``cached=True`` returns the marks the
        last fetch responses carried, instantly: after consuming, a broker query would queue
        behind the open fetch request (about 0.5 s per partition, measured).
        """
        return {
            tp: self._consumer.get_watermark_offsets(
                RdTopicPartition(tp.topic, tp.partition),
                timeout=METADATA_TIMEOUT_S,
                cached=cached,
            )
            for tp in tps
        }

    def assign_at(self, positions: dict[TopicPartition, int]) -> None:
        self._consumer.assign(
            [RdTopicPartition(tp.topic, tp.partition, offset) for tp, offset in positions.items()]
        )

    def poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[RdMessage]]:
        """Up to ``max_records`` messages, grouped by partition in offset order."""
        messages = self._consumer.consume(num_messages=max_records, timeout=timeout_ms / 1000)
        grouped: dict[tuple[str, int], list[RdMessage]] = defaultdict(list)
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(error)
            grouped[(message.topic(), message.partition())].append(message)
        return {TopicPartition(*key): batch for key, batch in grouped.items()}

    def close(self) -> None:
        self._consumer.close()
