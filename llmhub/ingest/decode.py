"""Decode a run of one partition's messages into COPY CSV, in this process or in a decoder pool.

Decoding (JSON, the contract, normalisation) and rendering rows as COPY CSV are the ingester's
CPU; sending the text and everything transactional stays with the one process that owns the
partitions and the database connection. A pool of decoder processes therefore spreads that CPU
over the cores however the messages fall on the partitions (a keyed topic is rarely balanced:
one tenant can fill most of a partition), and it decodes the next batch while the server is
busy with the COPY of the previous one.

The result of a chunk is plain data (bytes and integer arrays), cheap to send between processes:
the COPY CSV of the accepted rows with each row's end, the day (UTC ordinal) of each row for
the chunk limit of a transaction, and the rejections with their reasons.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import threading
import time
from array import array
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from psycopg._copy_base import format_row_text  # the C row renderer behind COPY ... write_row
from psycopg.adapt import Transformer

from llmhub.config import Settings
from llmhub.contract.topics import BY_TOPIC
from llmhub.ingest.normalize import ErrorClass, Normalizer, Rejection

# Messages per decoding task: small enough that one busy partition is shared by every decoder,
# large enough that sending the task costs little beside decoding it.
CHUNK_MESSAGES = 4_000
# How often a decoder checks that the process that started it is still alive.
PARENT_CHECK_S = 0.5


@dataclass(slots=True)
class DecodedChunk:
    """Messages ``[0, n)`` of a run of one partition, decoded.

    ``index[k]`` is the message (position in the run) of accepted row ``k``; its COPY CSV is
    ``text[ends[k - 1]:ends[k]]`` (``ends[-1]`` before the first row being 0; see ``end``) and
    its event day ``days[k]``. ``rejected`` holds ``(message position, error class, reason)``.
    """

    text: bytes = b""
    ends: array = field(default_factory=lambda: array("q"))
    index: array = field(default_factory=lambda: array("l"))
    days: array = field(default_factory=lambda: array("l"))
    rejected: list[tuple[int, str, str]] = field(default_factory=list)
    decode_s: float = 0.0
    format_s: float = 0.0

    def end(self, rows: int) -> int:
        """Where the text of the first ``rows`` accepted rows ends. (A chunk rendered a run at
        a time leaves ``ends`` empty: they are found here, the rare time a batch is cut.)"""
        if rows == 0:
            return 0
        if rows == len(self.index):
            return len(self.text)
        if not self.ends:
            self.ends = _line_ends(self.text)
        return self.ends[rows - 1]


def decode_chunk(
    normalizer: Normalizer,
    values: Sequence[bytes | None],
    partition: int,
    offsets: Sequence[int],
    now: datetime,
    transformer: Transformer | None = None,
) -> DecodedChunk:
    """Normalise ``values`` (messages at ``offsets`` of ``partition``) and render the accepted
    rows as COPY CSV. Never raises for anything a message contains: a row the renderer cannot
    render is rejected as ``internal``, like any unforeseen per-message exception."""
    tx = transformer or Transformer()
    out = DecodedChunk()
    clock = time.perf_counter
    started = clock()
    # Most chunks: every message canonical, rendered a run at a time.
    fast = normalizer.fast_copy_lines(values, partition, offsets, now)
    if fast is not None and len(fast.positions) == len(values):
        out.text = fast.text  # ``ends`` are found if a batch ever needs them (``end``)
        out.index.extend(range(len(values)))
        out.days.extend(fast.days)
        out.decode_s = clock() - started
        return out
    # Otherwise those lines in their places, and every other message one at a time.
    fast_lines = fast.text.split(b"\n") if fast is not None else []
    fast_positions = fast.positions if fast is not None else []
    fast_days = fast.days if fast is not None else []
    k, next_fast = 0, fast_positions[0] if fast_positions else -1
    buffer = bytearray()
    ends, index, days, rejected = out.ends, out.index, out.days, out.rejected
    normalize, fast_line = normalizer.normalize, normalizer.fast_copy_line
    append = buffer.extend
    format_s = 0.0
    for i, (value, offset) in enumerate(zip(values, offsets, strict=True)):
        if i == next_fast:
            append(fast_lines[k])
            append(b"\n")
            ends.append(len(buffer))
            index.append(i)
            days.append(fast_days[k])
            k += 1
            next_fast = fast_positions[k] if k < len(fast_positions) else -1
            continue
        try:
            # Most messages: the canonical shape, rendered straight to its line (decoding and
            # formatting in one step, counted as decoding).
            line = fast_line(value, partition, offset, now)
        except Exception:  # whatever it was, the general way below decides and explains
            line = None
        if line is not None:
            append(line[0])
            ends.append(len(buffer))
            index.append(i)
            days.append(line[1])
            continue
        row = normalize(value, partition, offset, now)
        if type(row) is Rejection:
            rejected.append((i, str(row.error_class), row.error))
            continue
        formatted = clock()
        try:
            # occurred_at as ISO-8601 text: the server reads the same instant, and psycopg's
            # datetime renderer costs more than the rest of the row together (measured).
            text = bytearray()
            format_row_text((row[0], row[1].isoformat(), *row[2:]), tx, text)
            append(text_line_to_csv(text))
        except Exception as exc:  # a value the renderer refuses: this message's fault, kept
            rejected.append(
                (i, str(ErrorClass.internal), f"row could not be rendered for COPY: {exc!r}"[:1000])
            )
            continue
        finally:
            format_s += clock() - formatted
        ends.append(len(buffer))
        index.append(i)
        days.append(row[1].toordinal())  # occurred_at, in UTC
    out.text = bytes(buffer)
    # Timed once per chunk (a clock read per message costs more than the checks it times).
    out.decode_s, out.format_s = clock() - started - format_s, format_s
    return out


def _line_ends(text: bytes) -> array:
    """The end (exclusive) of every line of ``text``, each ending in a newline."""
    ends = array("q")
    at = text.find(b"\n")
    while at >= 0:
        ends.append(at + 1)
        at = text.find(b"\n", at + 1)
    return ends


# COPY text's escapes as psycopg writes them (backslash, then one of these letters).
_TEXT_ESCAPE = re.compile(rb"\\(.)", re.DOTALL)
_UNESCAPED = {
    b"b": b"\b",
    b"t": b"\t",
    b"n": b"\n",
    b"v": b"\v",
    b"f": b"\f",
    b"r": b"\r",
    b"\\": b"\\",
}


def _unescape(match: re.Match[bytes]) -> bytes:
    return _UNESCAPED[match.group(1)]  # any other escape is not psycopg's: KeyError, refused


def text_line_to_csv(line: bytes | bytearray) -> bytes:
    """A COPY text line (as psycopg renders a row) as the same row in COPY CSV: every value
    quoted, NULL (``\\N``) an unquoted empty field. The rows the decoders render themselves
    are CSV (the server parses it for less CPU than text: measured), so one COPY takes both."""
    fields = bytes(line).removesuffix(b"\n").split(b"\t")
    out = []
    for value in fields:
        if value == b"\\N":
            out.append(b"")
            continue
        if b"\\" in value:
            value = _TEXT_ESCAPE.sub(_unescape, value)
        out.append(b'"' + value.replace(b'"', b'""') + b'"')
    return b",".join(out) + b"\n"


# Decoder processes: the normalisers of the topics, built once per process.
_normalizers: dict[str, Normalizer] = {}
_transformer: Transformer | None = None


def _init_decoder(settings: Settings, topics: Sequence[str]) -> None:
    global _transformer
    # The ingesting process decides when decoders stop: Ctrl-C reaches the whole process group,
    # and a decoder dying of it would break the pool under a run that is shutting down cleanly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A decoder inherits both ends of the pool's pipes, so it never sees them close: if the
    # ingesting process is killed, nothing would ever end its decoders. They watch their parent.
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    _normalizers.clear()
    for contract_topic in topics:
        _normalizers[settings.topic(contract_topic)] = Normalizer(
            BY_TOPIC[contract_topic], settings
        )
    _transformer = Transformer()


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(0)


def _decode_task(
    topic: str,
    partition: int,
    offsets: Sequence[int],
    values: Sequence[bytes | None],
    now: datetime,
) -> DecodedChunk:
    return decode_chunk(_normalizers[topic], values, partition, offsets, now, _transformer)


class DecoderPool:
    """``processes`` decoder processes for the topics of one ingester.

    Start it before anything starts threads (the Kafka client does): it forks then, which takes
    milliseconds; with threads running it spawns, which re-imports the project (seconds).
    """

    def __init__(self, settings: Settings, topics: Sequence[str], processes: int) -> None:
        method = "fork" if threading.active_count() == 1 else "spawn"
        self._pool = ProcessPoolExecutor(
            max_workers=processes,
            mp_context=multiprocessing.get_context(method),
            initializer=_init_decoder,
            initargs=(settings, list(topics)),
        )
        # With fork, the executor starts every process at its first task: start them now, while
        # this process is still single-threaded, not when the Kafka client's threads run.
        self._pool.submit(int).result()

    def submit(
        self,
        topic: str,
        partition: int,
        offsets: Sequence[int],
        values: Sequence[bytes | None],
        now: datetime,
    ) -> list[Future[DecodedChunk]]:
        """Decode a run of one partition in chunks of ``CHUNK_MESSAGES``, in order."""
        return [
            self._pool.submit(
                _decode_task,
                topic,
                partition,
                offsets[start : start + CHUNK_MESSAGES],
                values[start : start + CHUNK_MESSAGES],
                now,
            )
            for start in range(0, len(values), CHUNK_MESSAGES)
        ]

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
