"""The msgspec shortcut for telemetry (llmhub.contract.fast) accepts and rejects exactly what the
pydantic contract does, and yields the same rows: the normaliser's outcome with the shortcut
equals its outcome without it, for canonical, borderline, mutated and random messages."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from psycopg._copy_base import format_row_text
from psycopg.adapt import Transformer

from llmhub.config import Settings
from llmhub.contract.fast import decode_telemetry, plain_uuid
from llmhub.contract.models import TelemetryEvent
from llmhub.contract.topics import BY_TOPIC
from llmhub.ingest.decode import decode_chunk, text_line_to_csv
from llmhub.ingest.normalize import (
    FAST_RUN,
    Normalizer,
    Rejection,
    _encoded_line,
    _plain_uuids,
    _telemetry_line,
)
from llmhub.ingest.tables import ARRAY_COLUMNS, TABLES

EventFactory = Callable[..., dict[str, Any]]
TELEMETRY = BY_TOPIC["llm.telemetry"]
NOW = datetime.now(UTC)
FAST = Normalizer(TELEMETRY, Settings())
SLOW = Normalizer(TELEMETRY, Settings(), fast=False)


class LineAtATime(Normalizer):
    """The shortcut one message at a time only (``fast_copy_line``), as before runs."""

    def fast_copy_lines(self, *args: Any) -> None:
        return None


ONE_BY_ONE = LineAtATime(TELEMETRY, Settings())

BODY_KEYS = [
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.response.id",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.response.finish_reasons",
    "error.type",
    "http.response.status_code",
    "status",
    "latency_ms",
    "time_to_first_token_ms",
    "cost_usd",
    "user.id",
    # aliases and derived inputs the shortcut leaves to pydantic
    "gen_ai.system",
    "gen_ai.usage.prompt_tokens",
    "provider",
    "latency_s",
    "gen_ai.server.time_to_first_token",
    "extra.attribute",
]
ENVELOPE_KEYS = [
    "event_id",
    "event_type",
    "source_module",
    "occurred_at",
    "tenant_id",
    "asset_id",
    "severity",
    "schema_version",
    "unknown",
]


def _stamp(moment: datetime, digits: int, zone: str) -> str:
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{moment.microsecond:06d}{moment.microsecond:03d}"[:digits]
    return text + zone


recent = st.builds(
    _stamp,
    st.datetimes(min_value=NOW - timedelta(days=3), max_value=NOW),
    st.integers(0, 6),
    st.sampled_from(["Z", "+00:00", "-05:30", "+01:00"]),
)
timestamps = st.one_of(
    recent,
    recent,
    recent,
    st.builds(
        _stamp,
        st.datetimes(min_value=NOW - timedelta(days=4000), max_value=NOW + timedelta(days=2)),
        st.integers(0, 9),
        st.sampled_from(["Z", "z", "+00:00", "-05:30", "+14:00", "+24:00", "", "+0100", " Z"]),
    ),
    st.integers(-(2**64), 2**64),
    st.floats(),
    st.text(max_size=30),
    st.sampled_from(
        ["2026-02-30T00:00:00Z", "2026-11-28T24:00:00Z", "2026-11-28T23:59:60Z", "2026-11-28"]
    ),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, 99, 100, 429, 599, 600, 100_000_000, 100_000_001, 86_400_000]),
    st.floats(),
    st.sampled_from([0.0, -0.0, 1e6, 1_000_000.0000001, 86_400_000.0, 86_400_000.1]),
    st.text(max_size=70),
    st.sampled_from(["", "x" * 256, "x" * 257, "é" * 256, "429", "INFO", "High", "1.0", "1.2\n"]),
    st.sampled_from(["2.0", "ok", "error", "rate_limited", "00000000-0000-0000-0000-00000000000g"]),
    # event ids around the shortcut's hyphenated-only check (the contract's hyphens are optional)
    st.sampled_from(
        [
            "ABCDEF01-2345-6789-ABCD-EF0123456789",
            "abcdef0123456789abcdef0123456789",
            "abcdef01-23456789-abcd-ef0123456789",
            "abcdef01-2345-6789-abcd-ef012345678-",
            "abcdef01-2345-6789-abcd-ef012345678\u0660",
            "abcdef01-2345-6789-abcd-ef01234567 9",
            "1.1",
            "1.10",
            "1.",
        ]
    ),
    st.lists(st.text(max_size=70), max_size=18),
)


@st.composite
def telemetry_messages(draw: st.DrawFn, make_event: EventFactory) -> bytes:
    event = make_event("telemetry")
    event["occurred_at"] = draw(timestamps)
    for _ in range(draw(st.integers(0, 4))):
        where = draw(st.sampled_from(["envelope", "body"]))
        target, keys = (event, ENVELOPE_KEYS) if where == "envelope" else (event["body"], BODY_KEYS)
        key = draw(st.sampled_from(keys))
        if draw(st.booleans()):
            target.pop(key, None)
        else:
            target[key] = draw(scalars)
    value = json.dumps(event, ensure_ascii=draw(st.booleans())).encode()
    if draw(st.integers(0, 9)) == 0:
        at = draw(st.integers(0, len(value)))
        value = value[:at] + draw(st.binary(max_size=4)) + value[at + draw(st.integers(0, 3)) :]
    return value


# One COPY CSV field and its separator: quoted (quotes doubled, newlines allowed) or bare.
CSV_FIELD = re.compile(rb'(?:"((?:[^"]|"")*)"|([^,"\n]*))(,|\n)')


def csv_fields(line: bytes) -> list[bytes | None]:
    """The values of one COPY CSV line: a bare empty field is NULL, a quoted one a value."""
    values: list[bytes | None] = []
    at = 0
    while at < len(line):
        match = CSV_FIELD.match(line, at)
        assert match is not None and match.end() > at, line[at:]
        quoted, bare, _ = match.groups()
        values.append(quoted.replace(b'""', b'"') if quoted is not None else bare or None)
        at = match.end()
        if match.group(3) == b"\n":
            assert at == len(line), "one line per row"
    return values


# The columns whose text may differ between the two renderers for the same stored value.
_COLUMNS = TABLES["llm_requests"].columns
_NUMBERS = {"latency_ms", "time_to_first_token_ms", "cost_usd"}
_ARRAY_ELEMENT = re.compile(r'"((?:[^"\\]|\\.)*)"|([^,{}"]+)')


def _array_values(literal: bytes) -> list[str | None]:
    """The elements of a PostgreSQL array literal, quoted (backslash escapes) or bare."""
    text = literal.decode()
    assert text[0] == "{" and text[-1] == "}", text
    elements: list[str | None] = []
    for quoted, bare in _ARRAY_ELEMENT.findall(text[1:-1]):
        if bare:
            assert bare.strip() == bare and bare.lower() != "null", text  # read as written
            elements.append(bare)
        else:
            elements.append(re.sub(r"\\(.)", r"\1", quoted))
    return elements


def _stored_values(text: bytes) -> tuple[list[Any], datetime | None]:
    """A COPY line's values as the server stores them, ``occurred_at`` as the instant it
    names. The direct renderers send a UTC stamp as the producer wrote it ("...Z"), psycopg's
    row as isoformat ("...+00:00"); they quote different values (the general path every value,
    the encoder every string); floats may be written in another form of the same number
    ("1e-05", "0.00001"), and array elements with or without quotes."""
    if not text:
        return [], None
    values: list[Any] = []
    for column, field in zip(_COLUMNS, csv_fields(text), strict=True):
        if field is None or column == "occurred_at":
            values.append(field)
        elif column in _NUMBERS:
            values.append(Decimal(field.decode()))
        elif column in ARRAY_COLUMNS:
            values.append(_array_values(field))
        else:
            values.append(field)
    stamp = values.pop(_COLUMNS.index("occurred_at"))
    return values, datetime.fromisoformat(stamp.decode())


def _outcome(normalizer: Normalizer, value: bytes) -> Any:
    outcome = normalizer.normalize(value, 3, 7, NOW)
    if isinstance(outcome, Rejection):
        return (outcome.error_class, outcome.error)
    return tuple(type(v).__name__ if v is not None else None for v in outcome), outcome


def test_canonical_events_take_the_shortcut(event: EventFactory) -> None:
    # A guard: if the shortcut declined everything, the equivalence below would prove nothing.
    for overrides in ({}, {"severity": "high"}, {"body": {"error.type": "429"}}):
        value = json.dumps(event("telemetry", **overrides)).encode()
        assert decode_telemetry(value) is not None
        # ... and, without escapes, is rendered straight to its COPY line.
        # (``now`` of this call: NOW, from the import, can be older than the event's stamp.)
        assert FAST.fast_copy_line(value, 3, 7, datetime.now(UTC)) is not None


@settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
@example(data=None)
def test_the_shortcut_agrees_with_the_pydantic_contract(event: EventFactory, data: Any) -> None:
    if data is None:  # a fixed canonical example
        value = json.dumps(event("telemetry")).encode()
    else:
        value = data.draw(telemetry_messages(event))
    fast, slow = _outcome(FAST, value), _outcome(SLOW, value)
    assert fast == slow, value
    # ... and the COPY CSV the decoders render from either row holds the same values.
    rendered = [decode_chunk(n, [value], 0, [7], NOW) for n in (FAST, SLOW)]
    assert _stored_values(rendered[0].text) == _stored_values(rendered[1].text), value
    assert rendered[0].rejected == rendered[1].rejected, value
    if decode_telemetry(value) is not None:
        TelemetryEvent.model_validate_json(value)  # the contract accepts what the shortcut does


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.none() | st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00")),
        max_size=6,
    )
)
def test_text_rows_become_the_same_values_in_csv(values: list[str | None]) -> None:
    # The general path renders rows with psycopg (COPY text) and sends them as CSV: every
    # escape undone, every value quoted, NULL still NULL, an empty string still a value.
    text = bytearray()
    format_row_text((*values, "end"), Transformer(), text)
    assert csv_fields(text_line_to_csv(text)) == [
        None if v is None else v.encode() for v in (*values, "end")
    ]


@pytest.mark.parametrize(
    ("reasons", "encoded"),
    [
        (None, True),
        ([], True),
        (["stop"], True),
        (["max_tokens", "content_filter"], True),
        (["NULL"], False),  # a bare NULL element would be read as NULL
        (["a b"], False),
        ([""], False),
        (["x,y"], False),
        (["{x}"], False),
    ],
)
@pytest.mark.parametrize("cost", [0.00001, 1e-07, 5e-10, 999_999.5, 123.456, None])
def test_the_encoded_line_holds_the_f_string_lines_values(
    event: EventFactory, reasons: list[str] | None, cost: float | None, encoded: bool
) -> None:
    # The msgspec-encoded line replaces the f-string one where it can: the
    # server must store the same row from either (numbers and array literals are written
    # differently), and where it would not, the encoder must decline.
    # (a None body value removes the key)
    message = event("telemetry", body={"gen_ai.response.finish_reasons": reasons, "cost_usd": cost})
    decoded = decode_telemetry(json.dumps(message).encode())
    assert decoded is not None
    fast, _, status = decoded
    assert (fast.body.finish_reasons, fast.body.cost_usd) == (reasons, cost)
    line = _encoded_line(fast, fast.occurred_at, status, 3, 7)
    assert (line is not None) == encoded
    if line is not None:
        reference = _telemetry_line(fast, fast.occurred_at, status, 3, 7)
        assert _stored_values(line) == _stored_values(reference)


def _canonical_run(event: EventFactory, count: int, now: datetime) -> list[bytes]:
    """``count`` canonical messages, a second apart, varied as real traffic is."""
    values = []
    for i in range(count):
        body: dict[str, Any] = {
            "gen_ai.response.finish_reasons": [["stop"], ["length"], None, []][i % 4],
            "cost_usd": [0.00001, None, 12.5][i % 3],
            "error.type": "timeout" if i % 7 == 0 else None,
            "user.id": f"user-{i}" if i % 2 else None,
        }
        moment = now - timedelta(seconds=i + 1)
        digits = i % 7
        stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[: 20 + digits if digits else 19]
        stamp += ["Z", "+00:00"][i % 2]
        values.append(json.dumps(event("telemetry", occurred_at=stamp, body=body)).encode())
    return values


def _assert_same_chunk(values: list[bytes | None], now: datetime) -> None:
    offsets = list(range(100, 100 + len(values)))
    runs, reference = (decode_chunk(n, values, 2, offsets, now) for n in (FAST, ONE_BY_ONE))
    assert list(runs.index) == list(reference.index)
    assert list(runs.days) == list(reference.days)
    assert runs.rejected == reference.rejected
    assert runs.text == reference.text  # the same line, byte for byte, in the same place
    lines = reference.text.splitlines(keepends=True)
    assert [runs.end(k) for k in range(len(lines) + 1)] == [
        sum(map(len, lines[:k])) for k in range(len(lines) + 1)
    ]
    # ... and what the pydantic contract alone accepts and stores.
    contract = decode_chunk(SLOW, values, 2, offsets, now)
    assert list(contract.index) == list(runs.index) and contract.rejected == runs.rejected
    for line, expected in zip(lines, contract.text.splitlines(keepends=True), strict=True):
        assert _stored_values(line) == _stored_values(expected)


def test_canonical_chunks_are_rendered_a_run_at_a_time(event: EventFactory) -> None:
    # A guard: canonical traffic (nulls, empty and missing arrays, either UTC form, 0-6
    # decimals) takes the run-at-a-time renderer for every message, over several runs.
    now = datetime.now(UTC)
    values = _canonical_run(event, 2 * FAST_RUN + 17, now)
    lines = FAST.fast_copy_lines(values, 2, list(range(len(values))), now)
    assert lines is not None and list(lines.positions) == list(range(len(values)))
    _assert_same_chunk(values, now)


@pytest.mark.parametrize(
    "odd",
    [
        {"tenant_id": "a],[b"},  # the encoder's row separator inside a value
        {"tenant_id": "[x]"},
        {"body": {"user.id": "tab\there"}},  # a tab, escaped in JSON
        {"occurred_at": "2026-02-30T00:00:00Z"},  # no such day
        {"occurred_at": "2020-01-01T00:00:00Z"},  # out of range
        {"occurred_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+01:00")},
        {"event_id": "ABCDEF0123456789ABCDEF0123456789"},  # no hyphens: the contract's form
        {"schema_version": "1.1"},
        {"body": {"gen_ai.response.finish_reasons": ["a b"]}},  # not a bare word
        {"body": {"latency_ms": None}},  # required by the shortcut, derived by the contract
    ],
)
def test_a_message_a_run_cannot_render_takes_its_place_one_at_a_time(
    event: EventFactory, odd: dict[str, Any]
) -> None:
    now = datetime.now(UTC)
    values: list[bytes | None] = list(_canonical_run(event, FAST_RUN + 9, now))
    message = json.dumps(event("telemetry", **odd)).encode()
    values[5] = message
    values[FAST_RUN + 3] = None  # a tombstone in the second run
    _assert_same_chunk(values, now)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_runs_agree_with_one_message_at_a_time(event: EventFactory, data: Any) -> None:
    # Mutated and random messages between canonical ones, across two runs: the run-at-a-time
    # renderer takes exactly the messages the line-at-a-time shortcut takes, each row in its
    # place, the same bytes, the same rejections.
    now = datetime.now(UTC)
    values: list[bytes | None] = list(_canonical_run(event, FAST_RUN + 20, now))
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(values) - 1))
        values[at] = data.draw(telemetry_messages(event) | st.none() | st.binary(max_size=20))
    _assert_same_chunk(values, now)


hex_or_not = st.sampled_from("0123456789abcdefABCDEF-g ÿé\n")


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.uuids().map(str),
            st.uuids().map(lambda u: str(u).upper()),
            st.text(hex_or_not, min_size=36, max_size=36),
            st.uuids()
            .map(str)
            .flatmap(
                lambda u: st.builds(
                    lambda at, c: u[:at] + c + u[at + 1 :], st.integers(0, 35), hex_or_not
                )
            ),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_event_ids_checked_together_agree_with_one_at_a_time(ids: list[str]) -> None:
    assert _plain_uuids(ids) == all(plain_uuid(i) for i in ids)
