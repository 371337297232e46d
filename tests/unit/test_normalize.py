"""The normaliser: every rejection class with an informative reason, and the rows it accepts."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from llmhub.config import Settings
from llmhub.contract.topics import BY_FAMILY, BY_TOPIC
from llmhub.ingest.normalize import ErrorClass, Normalizer, Rejection
from llmhub.ingest.tables import TABLES

EventFactory = Callable[..., dict[str, Any]]
Build = Callable[[EventFactory], bytes | None]

# The factory stamps events a minute before the real clock, so "now" is the real clock too, read
# when each message is normalised (a module-level "now" made events stamped minutes into a slow
# test run look more than the allowed skew in the future).
NOW = datetime.now(UTC)  # for the parametrized rejections, which name exact distances
TELEMETRY = BY_TOPIC["llm.telemetry"]


def _dumps(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event)


def _without(field: str) -> Build:
    def build(event: EventFactory) -> bytes:
        payload = event("telemetry")
        del payload[field]
        return _dumps(payload)

    return build


def _at(moment: Any) -> Build:
    return lambda event: _dumps(event("telemetry", occurred_at=moment))


def _body(**body: Any) -> Build:
    return lambda event: _dumps(event("telemetry", body=body))


def _raw_json_with(field: str, raw_json_string: bytes) -> Build:
    """An event whose ``field`` holds ``raw_json_string`` spliced in verbatim (escapes and all)."""

    def build(event: EventFactory) -> bytes:
        placeholder = "@@PLACEHOLDER@@"
        encoded = _dumps(event("telemetry", **{field: placeholder}))
        return encoded.replace(f'"{placeholder}"'.encode(), raw_json_string)

    return build


REJECTIONS = [
    pytest.param(lambda event: b"", {}, ErrorClass.empty, ["empty"], id="empty"),
    pytest.param(lambda event: None, {}, ErrorClass.empty, ["tombstone"], id="tombstone"),
    pytest.param(
        lambda event: _dumps(event("telemetry")),
        {"max_message_bytes": 100},
        ErrorClass.oversized,
        ["limit is 100", "LLMHUB_MAX_MESSAGE_BYTES"],
        id="oversized",
    ),
    pytest.param(
        lambda event: _dumps(event("telemetry", tenant_id="caf\u00e9")).replace(
            b"caf\xc3\xa9", b"caf\xe9"
        ),
        {},
        ErrorClass.not_utf8,
        ["not UTF-8", "at byte"],
        id="latin1-byte",
    ),
    pytest.param(
        lambda event: b"\xff\xfe{}", {}, ErrorClass.not_utf8, ["not UTF-8"], id="utf16-bom"
    ),
    pytest.param(
        # UTF-8 is only checked once parsing failed: the parser must refuse bad bytes anywhere.
        lambda event: _dumps(event("telemetry", body={"note": "@@"})).replace(
            b"@@", b"\xed\xa0\x80"
        ),
        {},
        ErrorClass.not_utf8,
        ["not UTF-8"],
        id="surrogate-bytes-in-attribute",
    ),
    pytest.param(
        lambda event: _dumps(event("telemetry"))[:-7],
        {},
        ErrorClass.invalid_json,
        ["invalid JSON"],
        id="truncated-json",
    ),
    pytest.param(
        lambda event: b"tenant=a,latency=3", {}, ErrorClass.invalid_json, ["invalid JSON"], id="csv"
    ),
    pytest.param(
        _raw_json_with("tenant_id", b'"a\x00b"'),
        {},
        ErrorClass.invalid_json,
        ["invalid JSON"],
        id="raw-nul-byte-in-string",
    ),
    pytest.param(
        _without("tenant_id"), {}, ErrorClass.schema, ["tenant_id", "required"], id="missing"
    ),
    pytest.param(
        _body(**{"gen_ai.usage.input_tokens": "many"}),
        {},
        ErrorClass.schema,
        ["body.gen_ai.usage.input_tokens", "integer"],
        id="mistyped",
    ),
    pytest.param(
        _body(**{"gen_ai.usage.output_tokens": -1}),
        {},
        ErrorClass.schema,
        ["output_tokens", "greater than or equal to 0"],
        id="negative-tokens",
    ),
    pytest.param(
        lambda event: _dumps(event("telemetry", event_id="not-a-uuid")),
        {},
        ErrorClass.schema,
        ["event_id"],
        id="bad-uuid",
    ),
    pytest.param(
        lambda event: _dumps(event("telemetry", schema_version="2.0")),
        {},
        ErrorClass.schema,
        ["schema_version"],
        id="schema-2.0",
    ),
    pytest.param(
        lambda event: _dumps([event("telemetry")]),
        {},
        ErrorClass.schema,
        ["not an object"],
        id="json-array",
    ),
    pytest.param(lambda event: b'"hello"', {}, ErrorClass.schema, ["not an object"], id="string"),
    pytest.param(lambda event: b"42", {}, ErrorClass.schema, ["not an object"], id="number"),
    pytest.param(
        _raw_json_with("tenant_id", b'"a\\u0000b"'),
        {},
        ErrorClass.unstorable,
        ["NUL"],
        id="escaped-nul",
    ),
    pytest.param(
        # An escaped backslash followed by an escaped NUL: the text holds a real NUL.
        _raw_json_with("tenant_id", b'"a\\\\\\u0000b"'),
        {},
        ErrorClass.unstorable,
        ["NUL"],
        id="backslash-then-escaped-nul",
    ),
    pytest.param(
        _body(**{"attr\u0000key": 1}),
        {},
        ErrorClass.unstorable,
        ["NUL"],
        id="nul-in-attribute-key",
    ),
    pytest.param(
        _at("2026-03-12T11:00:00"),
        {},
        ErrorClass.naive_timestamp,
        ["no UTC offset", "LLMHUB_NAIVE_TIMEZONES"],
        id="naive",
    ),
    pytest.param(
        _at((NOW + timedelta(hours=1)).isoformat()),
        {},
        ErrorClass.timestamp_out_of_range,
        ["3600 s in the future", "allowed skew is 300 s"],
        id="future",
    ),
    pytest.param(
        _at((NOW - timedelta(days=40)).isoformat()),
        {"max_event_age_days": 30},
        ErrorClass.timestamp_out_of_range,
        ["older than 30 days", "LLMHUB_MAX_EVENT_AGE_DAYS"],
        id="too-old",
    ),
    pytest.param(
        _at("1970-01-01T00:00:00Z"),
        {},
        ErrorClass.timestamp_out_of_range,
        ["older than 3650 days"],
        id="epoch-zero",
    ),
]


@pytest.mark.parametrize(("build", "overrides", "error_class", "fragments"), REJECTIONS)
def test_rejection_class_and_reason(
    event: EventFactory,
    build: Build,
    overrides: dict[str, Any],
    error_class: ErrorClass,
    fragments: list[str],
) -> None:
    normalizer = Normalizer(TELEMETRY, Settings(**overrides))
    outcome = normalizer.normalize(build(event), 0, 0, NOW)
    assert isinstance(outcome, Rejection)
    assert outcome.error_class is error_class
    for fragment in fragments:
        assert fragment in outcome.error


def test_many_schema_errors_are_summarised(event: EventFactory) -> None:
    payload = {"body": {}}
    outcome = Normalizer(TELEMETRY, Settings()).normalize(_dumps(payload), 0, 0, datetime.now(UTC))
    assert isinstance(outcome, Rejection)
    assert outcome.error_class is ErrorClass.schema
    assert "... and" in outcome.error and "more" in outcome.error


def test_literal_backslash_u0000_text_is_stored(event: EventFactory) -> None:
    # "\\u0000" in JSON is a backslash followed by "u0000", which text can store.
    value = _raw_json_with("tenant_id", b'"a\\\\u0000b"')(event)
    row = Normalizer(TELEMETRY, Settings()).normalize(value, 0, 0, datetime.now(UTC))
    assert isinstance(row, tuple)
    assert row[TABLES[TELEMETRY.table].columns.index("tenant_id")] == "a\\u0000b"


def test_message_at_the_size_limit_is_accepted(event: EventFactory) -> None:
    value = _dumps(event("telemetry"))
    row = Normalizer(TELEMETRY, Settings(max_message_bytes=len(value))).normalize(
        value, 0, 0, datetime.now(UTC)
    )
    assert isinstance(row, tuple)


@pytest.mark.parametrize("family", sorted(BY_FAMILY))
def test_accepted_row_carries_utc_time_attributes_and_kafka_coordinates(
    event: EventFactory, family: str
) -> None:
    spec = BY_FAMILY[family]
    table = TABLES[spec.table]
    payload = event(family, occurred_at="2026-03-12T13:00:00+02:00", body={"custom.note": "kept"})
    row = Normalizer(spec, Settings()).normalize(_dumps(payload), 3, 41, datetime.now(UTC))
    assert isinstance(row, tuple)
    values = dict(zip(table.columns, row, strict=True))
    assert values["event_id"] == payload["event_id"]
    assert values["occurred_at"] == datetime(2026, 3, 12, 11, 0, tzinfo=UTC)
    assert orjson.loads(values["attributes"]) == {"custom.note": "kept"}
    assert (values["kafka_partition"], values["kafka_offset"]) == (3, 41)
    assert values["source_module"] == spec.source_module


def test_row_without_extra_keys_has_empty_attributes(event: EventFactory) -> None:
    row = Normalizer(TELEMETRY, Settings()).normalize(
        _dumps(event("telemetry")), 0, 0, datetime.now(UTC)
    )
    assert isinstance(row, tuple)
    assert row[TABLES[TELEMETRY.table].columns.index("attributes")] == "{}"


@pytest.mark.parametrize(
    "occurred_at",
    [1e30, -1e30, "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"],
    ids=["huge-epoch", "huge-negative-epoch", "utc-after-year-9999", "utc-before-year-1"],
)
def test_unrepresentable_time_is_rejected_not_raised(event: EventFactory, occurred_at: Any) -> None:
    # Regression: OverflowError escaped the normaliser, so one such message crashed every run
    # on its partition (a poison pill).
    outcome = Normalizer(TELEMETRY, Settings()).normalize(
        _dumps(event("telemetry", occurred_at=occurred_at)), 0, 0, datetime.now(UTC)
    )
    assert isinstance(outcome, Rejection)
    assert outcome.error_class in (ErrorClass.schema, ErrorClass.timestamp_out_of_range)


@pytest.mark.parametrize(
    "occurred_at",
    [10**399, -(10**399), "9" * 400, 2**1024],
    ids=["400-digit-int", "400-digit-negative-int", "400-digit-string", "beyond-float"],
)
def test_integer_beyond_float_range_is_rejected_not_raised(
    event: EventFactory, occurred_at: Any
) -> None:
    # Regression: an integer of 400 digits raised OverflowError (int to float) inside the
    # contract, outside the dead-letter path, and stopped the partition for good.
    value = json.dumps(event("telemetry", occurred_at=occurred_at)).encode()
    outcome = Normalizer(TELEMETRY, Settings()).normalize(value, 0, 0, datetime.now(UTC))
    assert isinstance(outcome, Rejection)
    assert outcome.error_class is ErrorClass.schema
    assert outcome.error.startswith("occurred_at")


def test_an_unexpected_exception_is_an_internal_rejection(
    event: EventFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    normalizer = Normalizer(TELEMETRY, Settings())

    def explode(*args: Any) -> Any:
        raise KeyError("a bug in the normaliser")

    monkeypatch.setattr(normalizer, "_in_range", explode)
    outcome = normalizer.normalize(_dumps(event("telemetry")), 0, 0, datetime.now(UTC))
    assert isinstance(outcome, Rejection)
    assert outcome.error_class is ErrorClass.internal
    assert "KeyError" in outcome.error and "a bug in the normaliser" in outcome.error
