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
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import NamedTuple

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, KafkaException
from confluent_kafka import Message as RdMessage
from confluent_kafka import TopicPartition as RdTopicPartition

from llmhub.ingest.writer import Message

log = logging.getLogger(__name__)

METADATA_TIMEOUT_S = 10.0
# Errors the client reports in place of one record it could not read: about that record's
# bytes, not about the broker. Such a record is fetched again (the corruption may have been on
# the wire) and, if it stays unreadable, handed on as an ``UnreadableRecord`` to dead-letter.
RECORD_ERRORS = frozenset(
    {
        KafkaError._BAD_MSG,
        KafkaError._BAD_COMPRESSION,
        KafkaError.INVALID_RECORD,
        2,  # CORRUPT_MESSAGE: the record failed its CRC check on the broker
    }
)
REREAD_ATTEMPTS = 3
# Messages per ``consume()`` call (see ``PartitionReader._consume``).
CONSUME_SLICE = 2_000


class TopicPartition(NamedTuple):
    """A topic-partition (equal to kafka-python's namedtuple of the same name, which the
    ingester does not import: kafka-python costs seconds of start-up per run)."""

    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class UnreadableRecord:
    """A record the client could not read, in a batch where the record would be: its
    coordinates and the client's error (the reason it is dead-lettered)."""

    _topic: str
    _partition: int
    _offset: int
    reason: str

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> None:
        return None

    def value(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (TIMESTAMP_NOT_AVAILABLE, 0)


def as_message(record: RdMessage | Message | UnreadableRecord) -> Message:
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
        # (topic, partition, offset) -> times the record at that offset came back unreadable.
        self._unreadable: Counter[tuple[str, int, int]] = Counter()

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

    def poll(
        self, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[RdMessage | UnreadableRecord]]:
        """Up to ``max_records`` messages, grouped by partition in offset order.

        A record the client cannot read is fetched again from its offset (the rest of that
        partition's messages in this poll are dropped, to be read again after it) up to
        ``REREAD_ATTEMPTS`` times, then returned as an ``UnreadableRecord`` in its place. Any
        other error (the broker or the topic) raises ``KafkaException``.
        """
        messages = self._consume(timeout_ms, max_records)
        grouped: dict[tuple[str, int], list[RdMessage | UnreadableRecord]] = defaultdict(list)
        rereading: set[tuple[str, int]] = set()
        for message in messages:
            error = message.error()
            key = (message.topic(), message.partition())
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                offset = message.offset()
                if error.code() not in RECORD_ERRORS or offset is None or offset < 0:
                    raise KafkaException(error)
                if key in rereading:
                    continue
                attempts = self._unreadable[(*key, offset)] = self._unreadable[(*key, offset)] + 1
                if attempts < REREAD_ATTEMPTS:
                    log.warning(
                        "%s[%d] offset %d could not be read (%s); fetching it again",
                        *key,
                        offset,
                        error.str(),
                    )
                    self._consumer.seek(RdTopicPartition(key[0], key[1], offset))
                    rereading.add(key)
                    continue
                log.error(
                    "%s[%d] offset %d stays unreadable after %d fetches (%s); dead-lettered",
                    *key,
                    offset,
                    attempts,
                    error.str(),
                )
                del self._unreadable[(*key, offset)]
                grouped[key].append(
                    UnreadableRecord(key[0], key[1], offset, f"{error.name()}: {error.str()}")
                )
                continue
            if key not in rereading:
                grouped[key].append(message)
        return {TopicPartition(*key): batch for key, batch in grouped.items() if batch}

    def _consume(self, timeout_ms: int, max_records: int) -> list[RdMessage]:
        """Up to ``max_records`` messages, taken from the client's queue ``CONSUME_SLICE`` at a
        time, so that one call never builds a whole batch of Python messages at once while the
        thread streaming the previous batch's COPY waits for the GIL (the writer showed a
        20 ms gap per 50,000-message batch; this change was measured only together with the
        others of the same pass). The first slice waits up to ``timeout_ms``; the next ones
        take only what is already queued, until one comes back short."""
        messages = sliced = self._consumer.consume(
            num_messages=min(max_records, CONSUME_SLICE), timeout=timeout_ms / 1000
        )
        while len(sliced) == CONSUME_SLICE and len(messages) < max_records:
            sliced = self._consumer.consume(
                num_messages=min(max_records - len(messages), CONSUME_SLICE), timeout=0
            )
            messages.extend(sliced)
        return messages

    def close(self) -> None:
        self._consumer.close()
