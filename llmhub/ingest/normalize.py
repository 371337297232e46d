"""Turn one Kafka message value into a raw-table row, or into a rejection with a clear reason.

Checks run cheapest first: size, UTF-8, NUL characters (PostgreSQL text cannot store them), JSON
and the contract (one pydantic pass), then the timestamp (zone and range). Every rejection names
its class, so the dead-letter table can be grouped by cause.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import orjson
from pydantic import ValidationError

from llmhub.config import Settings
from llmhub.contract.fast import (
    ISO_LOCAL,
    FastTelemetryEvent,
    decode_event,
    decode_telemetry,
    derived_status,
    is_canonical,
)
from llmhub.contract.models import EVENT_MODELS, Envelope
from llmhub.contract.topics import TopicSpec
from llmhub.ingest.tables import TABLES, RawTable, text_array

# An escaped NUL is `\u0000` preceded by an even number of backslashes (an odd number means the
# backslash itself was escaped and the text is literally "\u0000").
_ESCAPED_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_MAX_ERRORS_REPORTED = 5
# Messages rendered together by ``Normalizer.fast_copy_lines``: small enough that a run's
# objects stay in the CPU's cache between its passes (4,000 at once cost 40% more per message
# than 250, measured), large enough that each pass costs little beside its work.
FAST_RUN = 256


class ErrorClass(StrEnum):
    """Why a message was dead-lettered."""

    empty = "empty"
    oversized = "oversized"
    not_utf8 = "not_utf8"
    invalid_json = "invalid_json"
    schema = "schema"
    unstorable = "unstorable"
    naive_timestamp = "naive_timestamp"
    timestamp_out_of_range = "timestamp_out_of_range"
    database = "database"
    # The client could not read the record at all (corrupt bytes, CRC mismatch, unknown
    # compression), even when fetched again: kept as its coordinates and the client's error.
    unreadable = "unreadable"
    # Anything unforeseen that one message triggered (a bug, not the producer's fault): the
    # message is kept and the batch goes on; the reason names the exception.
    internal = "internal"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message that cannot be stored as a row, with the reason kept beside its bytes."""

    error_class: ErrorClass
    error: str


def describe_validation_error(exc: ValidationError) -> tuple[ErrorClass, str]:
    """Classify a pydantic error (JSON syntax vs contract) and summarise its first problems."""
    errors = exc.errors(include_url=False, include_input=False)
    if any(err["type"] == "json_invalid" for err in errors):
        return ErrorClass.invalid_json, "invalid JSON: " + str(errors[0]["msg"])
    if any(err["type"] == "model_type" and not err["loc"] for err in errors):
        return ErrorClass.schema, "message is valid JSON but not an object"
    parts = [
        f"{'.'.join(str(p) for p in err['loc']) or '<message>'}: {err['msg']}"
        for err in errors[:_MAX_ERRORS_REPORTED]
    ]
    more = len(errors) - _MAX_ERRORS_REPORTED
    if more > 0:
        parts.append(f"... and {more} more")
    return ErrorClass.schema, "; ".join(parts)


def internal_rejection(exc: BaseException) -> Rejection:
    """An unforeseen exception raised while handling one message, as that message's reason."""
    return Rejection(ErrorClass.internal, f"{type(exc).__name__}: {exc}"[:1000])


class Normalizer:
    """Validates and normalises the messages of one topic into rows of its raw table.

    Args:
        spec: the topic and the family it carries.
        settings: size limit, allowed future skew, maximum age and per-topic zones for naive times.
        fast: use the msgspec shortcut where it applies (same outcomes, less CPU).
    """

    def __init__(self, spec: TopicSpec, settings: Settings, fast: bool = True) -> None:
        self.spec = spec
        self.table: RawTable = TABLES[spec.table]
        self._model: type[Envelope] = EVENT_MODELS[spec.family]
        self._max_bytes = settings.max_message_bytes
        self._skew = timedelta(seconds=settings.future_skew_s)
        self._max_age = timedelta(days=settings.max_event_age_days)
        zone = settings.naive_timezone.get(spec.topic)
        self._naive_zone = ZoneInfo(zone) if zone else None
        self._bounds_for: datetime | None = None
        self._bounds: tuple[datetime, datetime] = (datetime.min, datetime.max)
        # The msgspec shortcut for the canonical telemetry shape (llmhub.contract.fast); every
        # message it declines goes through the pydantic model.
        self._fast = decode_telemetry if fast and spec.family == "telemetry" else None

    def normalize(
        self, value: bytes | None, partition: int, offset: int, now: datetime
    ) -> tuple[Any, ...] | Rejection:
        """Return the raw-table row for ``value`` or the reason it was rejected; never raises
        for anything a message contains (an unforeseen exception is an ``internal`` rejection).

        Args:
            value: the message value as sent.
            partition, offset: where it was read, stored with the row.
            now: the reference time for the accepted ``occurred_at`` range; pass the same object
                for a whole batch (the range is computed once per distinct ``now``).
        """
        try:
            return self._normalize(value, partition, offset, now)
        except Exception as exc:  # one message must never stop the partition
            return internal_rejection(exc)

    def _normalize(
        self, value: bytes | None, partition: int, offset: int, now: datetime
    ) -> tuple[Any, ...] | Rejection:
        if not value:
            return Rejection(ErrorClass.empty, "message has no value (empty or tombstone)")
        if len(value) > self._max_bytes:
            return Rejection(
                ErrorClass.oversized,
                f"message is {len(value)} bytes; the limit is {self._max_bytes} "
                "(LLMHUB_MAX_MESSAGE_BYTES)",
            )
        if b"\\u0000" in value and _ESCAPED_NUL.search(value):
            return Rejection(
                ErrorClass.unstorable, "contains a NUL character (\\u0000), which text cannot store"
            )
        if self._fast is not None:
            decoded = self._fast(value)
            if decoded is not None:
                fast_event, fast_time, status = decoded
                checked = self._in_range(fast_time, fast_time, now)
                if type(checked) is Rejection:
                    return checked
                return self._fast_row(fast_event, checked, status, partition, offset)
        try:
            event = self._model.model_validate_json(value)
        except ValidationError as exc:
            # UTF-8 is checked only on this failure path: the JSON parser already refuses
            # invalid UTF-8, this just names the cause precisely.
            try:
                value.decode("utf-8")
            except UnicodeDecodeError as decode_error:
                return Rejection(
                    ErrorClass.not_utf8,
                    f"not UTF-8: {decode_error.reason} at byte {decode_error.start}",
                )
            error_class, message = describe_validation_error(exc)
            return Rejection(error_class, message)
        occurred_at = event.occurred_at
        if occurred_at.tzinfo is None:
            if self._naive_zone is None:
                return Rejection(
                    ErrorClass.naive_timestamp,
                    "occurred_at has no UTC offset and the topic has no configured zone "
                    "(LLMHUB_NAIVE_TIMEZONES)",
                )
            occurred_at = occurred_at.replace(tzinfo=self._naive_zone)
        checked = self._in_range(occurred_at, event.occurred_at, now)
        if type(checked) is Rejection:
            return checked
        extra = event.body.__pydantic_extra__  # type: ignore[attr-defined]
        try:
            attributes = orjson.dumps(extra).decode() if extra else "{}"
        except orjson.JSONEncodeError as exc:
            return Rejection(ErrorClass.unstorable, f"attributes cannot be stored: {exc}")
        return self.table.row(event, checked, attributes, partition, offset)

    def fast_copy_line(
        self, value: bytes | None, partition: int, offset: int, now: datetime
    ) -> tuple[bytes, int] | None:
        """The COPY CSV line (with its newline) and UTC day ordinal of a telemetry message in
        the canonical shape, rendered without psycopg; ``None`` sends the message the general
        way (:meth:`normalize`, then psycopg's renderer), which also explains every rejection.

        A message without a single backslash needs no escaping anywhere: JSON cannot carry a
        tab, newline, carriage return, backslash or double quote inside a string except as a
        backslash escape, and the parser refuses raw control characters. The line is then the
        fields joined by commas, free text in quotes: the same values as the general path's
        line for the same row (tested). Where its finish reasons are bare words, msgspec's
        encoder writes it (:func:`_encoded_line`): about half the instructions of the f-string
        of :func:`_telemetry_line` (15,700 against 28,000 per line, cachegrind)."""
        if self._fast is None or not value or len(value) > self._max_bytes or b"\\" in value:
            return None
        decoded = self._fast(value)
        if decoded is None:
            return None
        event, occurred_at, status = decoded
        checked = self._in_range(occurred_at, occurred_at, now)
        if type(checked) is Rejection:
            return None
        # The server reads the instant from the text as sent when it is already UTC (1.3 us of
        # isoformat saved per message); any other offset is sent converted, as psycopg would.
        sent = event.occurred_at
        stamp = sent if sent[-1] == "Z" or sent.endswith("+00:00") else checked.isoformat()
        line = _encoded_line(event, stamp, status, partition, offset)
        if line is None:
            line = _telemetry_line(event, stamp, status, partition, offset)
        return line, checked.toordinal()

    def fast_copy_lines(
        self, values: Sequence[bytes | None], partition: int, offsets: Sequence[int], now: datetime
    ) -> FastLines | None:
        """The COPY CSV lines of the messages of a chunk that :meth:`fast_copy_line` would
        render with msgspec's encoder, rendered a run at a time; the others are left to it.

        Per message this only decodes (C) and gathers the row's values. The checks that decide
        which messages qualify run over a run of ``FAST_RUN`` messages at once (the event ids
        by slicing, the timestamps by one regex, the range by the earliest and latest), and the
        run's rows are encoded in one call: the per-message Python of the line-at-a-time path
        is what the ingester's CPU went to. Where a run-wide check fails, the messages that
        fail it are found one by one and left out. A message qualifies when it is in the
        canonical shape without a backslash, its time is in UTC (``Z`` or ``+00:00``) and in
        range, and its finish reasons are bare words: then its line is exactly
        :func:`_encoded_line`'s (tested). ``None``: the line-at-a-time path for all.
        """
        if self._fast is None or not values:
            return None
        if now is not self._bounds_for:
            self._bounds_for = now
            self._bounds = (now - self._max_age, now + self._skew)
        runs = [
            (
                start,
                self._fast_run(
                    values[start : start + FAST_RUN], partition, offsets[start : start + FAST_RUN]
                ),
            )
            for start in range(0, len(values), FAST_RUN)
        ]
        if len(runs) == 1 and runs[0][1] is not None:
            return runs[0][1]
        done = [(start, run) for start, run in runs if run is not None]
        days = [day for _, run in done for day in run.days]
        text = b"".join(run.text for _, run in done)
        if len(days) == len(values):  # every message (the common case): no list of positions
            return FastLines(range(len(values)), text, days)
        positions = [start + i for start, run in done for i in run.positions]
        return FastLines(positions, text, days)

    def _fast_run(
        self, values: Sequence[bytes | None], partition: int, offsets: Sequence[int]
    ) -> FastLines | None:
        """:meth:`fast_copy_lines` for one run of messages."""
        positions: Sequence[int] = range(len(values))
        limit = self._max_bytes
        if None in values or min(map(len, values)) == 0 or max(map(len, values)) > limit:
            positions = [i for i in positions if values[i] and len(values[i]) <= limit]
        kept = [values[i] for i in positions]
        if b"\\" in b"\n".join(kept):
            positions = [i for i in positions if b"\\" not in values[i]]
            kept = [values[i] for i in positions]
        try:
            events = [decode_event(value) for value in kept]
        except (msgspec.DecodeError, msgspec.ValidationError):
            decoded = [_decode_or_none(value) for value in kept]
            positions = [i for i, e in zip(positions, decoded, strict=True) if e is not None]
            events = [e for e in decoded if e is not None]
        if not (
            None not in [e.body.latency_ms for e in events]
            and {e.schema_version for e in events} <= {"1.0"}
            and _plain_uuids([e.event_id for e in events])
            and _UTC_ISO_LINES("\n".join([e.occurred_at for e in events]))
        ):
            keep = [k for k, e in enumerate(events) if is_canonical(e, _utc_iso)]
            positions, events = _only(keep, positions), _only(keep, events)
        try:
            times = [datetime.fromisoformat(e.occurred_at) for e in events]
        except ValueError:  # a date that does not exist, such as 30 February
            keep = [k for k, e in enumerate(events) if _valid_time(e.occurred_at)]
            positions, events = _only(keep, positions), _only(keep, events)
            times = [datetime.fromisoformat(e.occurred_at) for e in events]
        if not events:
            return FastLines([], b"", [])
        earliest, latest = self._bounds
        if min(times) < earliest or max(times) > latest:
            keep = [k for k, t in enumerate(times) if earliest <= t <= latest]
            positions, events, times = (
                _only(keep, positions),
                _only(keep, events),
                _only(keep, times),
            )
        bodies = [e.body for e in events]
        arrays = [
            None if b.finish_reasons is None else _array_literal(b.finish_reasons) for b in bodies
        ]
        if "" in arrays:  # finish reasons the encoder would not write as PostgreSQL reads them
            keep = [k for k, array in enumerate(arrays) if array != ""]
            positions, events, times = (
                _only(keep, positions),
                _only(keep, events),
                _only(keep, times),
            )
            bodies, arrays = _only(keep, bodies), _only(keep, arrays)
        if not events:
            return FastLines([], b"", [])
        rows = [
            _fast_values(
                e, e.occurred_at, b.status or derived_status(b), array, partition, offsets[i], _NULL
            )
            for e, b, array, i in zip(events, bodies, arrays, positions, strict=True)
        ]
        encoded = _encode(rows)
        # ``[[row],[row],...]``: one ``],[`` between rows, and no other (a string holding one,
        # or anything the encoder escaped, sends the run the line-at-a-time way). One pass to
        # count and one to replace cost half the instructions of deleting every bracket.
        if b"\\" in encoded or encoded.count(b"],[") != len(rows) - 1:
            return None
        text = encoded[2:-2].replace(b"],[", b"\n") + b"\n"
        return FastLines(positions, text, [t.toordinal() for t in times])

    def _in_range(
        self, occurred_at: datetime, sent: datetime, now: datetime
    ) -> datetime | Rejection:
        """``occurred_at`` (aware) in UTC if within the accepted range, else the rejection."""
        try:
            occurred_at = occurred_at.astimezone(UTC)
        except OverflowError:
            return Rejection(
                ErrorClass.timestamp_out_of_range,
                f"occurred_at {sent.isoformat()} cannot be expressed in UTC",
            )
        if now is not self._bounds_for:
            self._bounds_for = now
            self._bounds = (now - self._max_age, now + self._skew)
        earliest, latest = self._bounds
        if occurred_at > latest:
            ahead_s = (occurred_at - latest).total_seconds() + self._skew.total_seconds()
            return Rejection(
                ErrorClass.timestamp_out_of_range,
                f"occurred_at {occurred_at.isoformat()} is {ahead_s:.0f} s in the future; "
                f"allowed skew is {self._skew.total_seconds():.0f} s",
            )
        if occurred_at < earliest:
            return Rejection(
                ErrorClass.timestamp_out_of_range,
                f"occurred_at {occurred_at.isoformat()} is older than "
                f"{self._max_age.days} days (LLMHUB_MAX_EVENT_AGE_DAYS)",
            )
        return occurred_at

    @staticmethod
    def _fast_row(
        e: FastTelemetryEvent, occurred_at: datetime, status: str, partition: int, offset: int
    ) -> tuple[Any, ...]:
        """The ``raw.llm_requests`` row of a fast-decoded event, in ``TABLES`` column order
        (equal to ``RawTable.row`` of the pydantic event: tested)."""
        return _fast_values(
            e, occurred_at, status, text_array(e.body.finish_reasons), partition, offset
        )


def _fast_values(
    e: FastTelemetryEvent,
    occurred_at: datetime | str,
    status: str,
    finish_reasons: Any,
    partition: int,
    offset: int,
    null: Any = None,
) -> tuple[Any, ...]:
    """The values of a fast-decoded event's row in ``TABLES`` column order, with its time and
    finish reasons as the caller renders them, and ``null`` for NULL. (Every optional text is
    non-empty and a status code at least 100: only ``None`` is false among them.)"""
    b = e.body
    return (
        e.event_id,
        occurred_at,
        e.tenant_id,
        e.asset_id,
        e.event_type,
        e.source_module,
        e.severity,  # a validated literal: the same text as the enum's value
        e.schema_version,
        b.operation_name,
        b.provider,
        b.request_model,
        b.response_model or null,
        b.response_id or null,
        status,
        b.http_status_code or null,
        b.error_type or null,
        finish_reasons or null,
        b.input_tokens,
        b.output_tokens,
        b.cache_read_tokens,
        b.latency_ms,
        null if b.time_to_first_token_ms is None else b.time_to_first_token_ms,
        null if b.cost_usd is None else b.cost_usd,
        b.user_id or null,
        "{}",
        partition,
        offset,
    )


def _telemetry_line(
    e: FastTelemetryEvent, occurred_at: str, status: str, partition: int, offset: int
) -> bytes:
    """The ``raw.llm_requests`` COPY CSV line of an escape-free fast-decoded event, in the
    column order of ``Normalizer._fast_row`` (``occurred_at`` as ISO-8601 text in UTC).

    Free text is always quoted: it may hold a comma, and an empty string must differ from NULL
    (an unquoted empty field). It never holds a double quote, which JSON only writes escaped.
    Literals, numbers, the event id and the time hold neither and go bare."""
    b = e.body
    reasons = b.finish_reasons
    # text_array's literal, quoted for CSV; no element holds a backslash or double quote here.
    array = "" if reasons is None else '"{""' + '"",""'.join(reasons) + '""}"' if reasons else "{}"
    return (
        f'{e.event_id},{occurred_at},"{e.tenant_id}","{e.asset_id}",'
        f'{e.event_type},"{e.source_module}",{e.severity},{e.schema_version},'
        f'"{b.operation_name}","{b.provider}","{b.request_model}",'
        f"{'' if b.response_model is None else _Q + b.response_model + _Q},"
        f"{'' if b.response_id is None else _Q + b.response_id + _Q},{status},"
        f"{'' if b.http_status_code is None else b.http_status_code},"
        f"{'' if b.error_type is None else _Q + b.error_type + _Q},"
        f"{array},"
        f"{b.input_tokens},{b.output_tokens},{b.cache_read_tokens},{b.latency_ms},"
        f"{'' if b.time_to_first_token_ms is None else b.time_to_first_token_ms},"
        f"{'' if b.cost_usd is None else b.cost_usd},"
        f"{'' if b.user_id is None else _Q + b.user_id + _Q},{{}},{partition},{offset}\n"
    ).encode()


_Q = '"'  # CSV's quote

_encode = msgspec.json.Encoder().encode
# Written as nothing at all: a NULL in COPY CSV is an empty unquoted field.
_NULL = msgspec.Raw(b"")
# Array elements PostgreSQL reads the same without quotes (and not one of them "NULL", in any
# case): a finish reason is a word such as "stop" or "max_tokens"; anything else takes the
# f-string renderer above.
_BARE_ELEMENT = re.compile(r"[A-Za-z0-9_.:+=/-]+", re.ASCII).fullmatch


def _bare_array(elements: list[str]) -> str | None:
    """The array literal of ``elements`` without quotes, if PostgreSQL reads it the same."""
    if all(_BARE_ELEMENT(e) and e.lower() != "null" for e in elements):
        return "{" + ",".join(elements) + "}"
    return None


# Finish reasons are a handful of words: their literals are kept, not checked per message.
_ARRAYS: dict[tuple[str, ...], str] = {}
_MAX_ARRAYS = 4096


def _array_literal(reasons: list[str]) -> str:
    """The bare array literal of ``reasons`` (:func:`_bare_array`, kept per distinct tuple), or
    ``""`` where there is none."""
    key = tuple(reasons)
    array = _ARRAYS.get(key)
    if array is None:
        array = _bare_array(reasons) or ""
        if len(_ARRAYS) < _MAX_ARRAYS:
            _ARRAYS[key] = array
    return array


@dataclass(frozen=True, slots=True)
class FastLines:
    """The messages of a chunk rendered by :meth:`Normalizer.fast_copy_lines`: their positions
    in the chunk (ascending), their COPY CSV lines in that order, and their UTC day ordinals."""

    positions: Sequence[int]
    text: bytes
    days: list[int]


# A run's times, one per line, checked by one match: the forms that ``decode_telemetry``
# accepts, in UTC only.
_UTC_ISO = ISO_LOCAL + r"(?:Z|\+00:00)"
_UTC_ISO_LINES = re.compile(rf"(?:{_UTC_ISO}\n)*{_UTC_ISO}", re.ASCII).fullmatch
_utc_iso = re.compile(_UTC_ISO, re.ASCII).fullmatch


def _only(keep: list[int], items: Sequence[Any]) -> list[Any]:
    return [items[k] for k in keep]


def _decode_or_none(value: bytes) -> FastTelemetryEvent | None:
    try:
        return decode_event(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def _plain_uuids(ids: list[str]) -> bool:
    """Whether every one of ``ids`` is a UUID in the hyphenated form of ``PLAIN_UUID``, checked
    over all at once: hyphens at the four places of each, and hex digits everywhere else. (A
    tenth of the instructions of one regex over them all.)"""
    joined = "".join(ids)
    count = len(ids)
    if len(joined) != 36 * count:
        return False
    hyphens = "-" * count
    if any(joined[place::36] != hyphens for place in (8, 13, 18, 23)):
        return False
    digits = joined.replace("-", "")
    if len(digits) != 32 * count or not digits.isascii():
        return False
    try:  # fromhex skips whitespace between pairs: 16 bytes per id only if all are digits
        return len(bytes.fromhex(digits)) == 16 * count
    except ValueError:
        return False


def _valid_time(stamp: str) -> bool:
    try:
        datetime.fromisoformat(stamp)
    except ValueError:
        return False
    return True


def _encoded_line(
    e: FastTelemetryEvent, occurred_at: str, status: str, partition: int, offset: int
) -> bytes | None:
    """The same line as :func:`_telemetry_line`, written by msgspec's JSON encoder from a tuple
    of the values; ``None`` where it would not be the same.

    The encoded tuple is a JSON array: every string in double quotes, which CSV reads as a
    quoted value (none of them holds a double quote, see ``fast_copy_line``), numbers bare
    (floats in their shortest round-trip form, the same double or numeric to the server) and
    NULL as nothing at all (``_NULL``), an empty bare field, CSV's NULL. So the line is the
    array without its brackets, provided the encoder escaped nothing (no backslash in its
    output)."""
    reasons = e.body.finish_reasons
    array = None
    if reasons is not None:
        array = _array_literal(reasons)
        if not array:
            return None
    encoded = _encode(_fast_values(e, occurred_at, status, array, partition, offset, _NULL))
    if b"\\" in encoded:
        return None
    return encoded[1:-1] + b"\n"
