"""Bad messages land in raw.dead_letter byte for byte with their reason; hostile but valid
strings are stored verbatim; the pipeline keeps going through any mix of good and bad input."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from integration.conftest import IsolatedStack
from llmhub.cli import app
from llmhub.contract.topics import BY_TOPIC, TOPICS
from llmhub.ingest.normalize import ErrorClass, Normalizer
from llmhub.ingest.writer import Batch, Message, RawWriter
from llmhub.producers import sink

pytestmark = pytest.mark.integration

EventFactory = Callable[..., dict[str, Any]]
MAX_BYTES = 4_096


def _dumps(value: Any) -> bytes:
    # The standard library, unlike orjson, serialises integers beyond 64 bits.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _bad_messages(event: EventFactory) -> list[tuple[str, bytes, str]]:
    """(contract topic, message bytes, expected error class) for every rejection class."""
    now = datetime.now(UTC)
    missing = event("telemetry")
    del missing["tenant_id"]
    nul = _dumps(event("security", tenant_id="@@")).replace(b'"@@"', b'"a\\u0000b"')
    return [
        ("llm.telemetry", b"", "empty"),
        ("llm.telemetry", _dumps(event("telemetry", body={"pad": "x" * MAX_BYTES})), "oversized"),
        ("llm.telemetry", b'{"tenant_id": "caf\xe9"}', "not_utf8"),
        ("llm.telemetry", b"\xff\xfe\x00{", "not_utf8"),
        ("llm.telemetry", b'{"event_id": "1", ', "invalid_json"),
        ("llm.telemetry", b"<xml>not json</xml>", "invalid_json"),
        ("llm.telemetry", _dumps(missing), "schema"),
        (
            "llm.telemetry",
            _dumps(event("telemetry", body={"gen_ai.usage.input_tokens": "lots"})),
            "schema",
        ),
        ("llm.telemetry", b"[1, 2, 3]", "schema"),
        ("llm.security", nul, "unstorable"),
        (
            "llm.governance",
            _dumps(event("governance", occurred_at="2026-01-01T10:00:00")),
            "naive_timestamp",
        ),
        (
            "llm.governance",
            _dumps(event("governance", occurred_at=(now + timedelta(days=2)).isoformat())),
            "timestamp_out_of_range",
        ),
        (
            "llm.registry",
            _dumps(event("registry", occurred_at=(now - timedelta(days=4_000)).isoformat())),
            "timestamp_out_of_range",
        ),
        # Valid by the contract (no upper bound on request_count) but beyond bigint: PostgreSQL
        # refuses it, and only that row is dead-lettered.
        ("llm.cost", _dumps(event("cost", body={"request_count": 10**20})), "database"),
    ]


def test_every_rejection_class_is_dead_lettered_with_its_exact_bytes(
    stack: IsolatedStack, event: EventFactory
) -> None:
    settings = replace(stack.settings, max_message_bytes=MAX_BYTES)
    bad = _bad_messages(event)
    for topic, value, _ in bad:
        stack.send(topic, [_dumps(event(BY_TOPIC[topic].family)), value], key=b"tenant-a")
    stack.send("llm.telemetry", [None], key=b"tombstone")

    report = stack.ingest(settings=settings, batch_max_records=7)

    rows = stack.query(
        "select topic, kafka_partition, kafka_offset, message_key, raw_value, error_class, "
        "error, kafka_timestamp from raw.dead_letter"
    )
    by_value = {bytes(row[4]) if row[4] is not None else None: row for row in rows}
    assert len(rows) == len(bad) + 1
    for topic, value, error_class in bad:
        row = by_value[value]
        assert row[0] == stack.topic(topic)
        assert row[3] == b"tenant-a"
        assert row[5] == error_class, (value[:80], row[6])
        assert len(row[6]) > 10
        assert row[7] is not None
    tombstone = by_value[None]
    assert (tombstone[3], tombstone[5]) == (b"tombstone", "empty")
    # Every class a message can cause through the broker (internal needs a bug to appear).
    # `internal` is a bug's class and `unreadable` a corrupt record no client can send: both
    # are covered by unit tests (test_ingest_decode, test_ingest_reader).
    assert {row[5] for row in rows} == {str(c) for c in ErrorClass} - {"internal", "unreadable"}
    # One good message went beside each bad one, plus the tombstone on telemetry.
    bad_per_topic = Counter(topic for topic, _, _ in bad)
    assert stack.counts() == {spec.table: bad_per_topic[spec.topic] for spec in TOPICS}
    assert report.dead_lettered == {
        stack.topic(topic): count + (topic == "llm.telemetry")
        for topic, count in bad_per_topic.items()
    }
    assert set(report.lag.values()) == {0}


HOSTILE = [
    "'); drop table raw.llm_requests; --",
    "Robert'); DROP TABLE students;-- ",
    "\u202egnp.exe",
    'quote " doubled "" single \' end',
    "back\\slash \\N \\. \\\\ \\u0000 end",
    'comma, separated, "values"',
    "new\nline\r\ncrlf\ttab\rcr",
    "line1\n\\.\nline3",
    "emoji \U0001f984 CJK \u6f22\u5b57 combining e\u0301 zwj \u200d bom \ufeff",
    "controls \u0001\u001f\u007f",
    "NULL",
    "%s %(x)s {} {0} $1 $$dollar$$ /* c */ -- c",
    " leading and trailing spaces ",
]


def _hostile_telemetry(event: EventFactory, text: str, i: int) -> dict[str, Any]:
    long_text = (text * (256 // len(text) + 1))[:256]
    return event(
        "telemetry",
        tenant_id=text,
        asset_id=long_text,
        body={
            "gen_ai.request.model": text,
            "gen_ai.response.id": f"{i}:{text}",
            "user.id": long_text,
            "error.type": text,
            "gen_ai.response.finish_reasons": [
                t[:64] for t in (text, "a,b", '"q"', "\\", "{x}", "NULL", " ", "")
            ],
            text: {"nested": text, "list": [text, None, 1.5]},
        },
    )


def _stored_telemetry(stack: IsolatedStack, event_id: str) -> dict[str, Any]:
    row = stack.query(
        "select tenant_id, asset_id, request_model, response_id, user_id, error_type, "
        "finish_reasons, attributes from raw.llm_requests where event_id = %s",
        (event_id,),
    )
    assert len(row) == 1
    names = ("tenant_id", "asset_id", "request_model", "response_id", "user_id", "error_type")
    return {
        **dict(zip(names, row[0][:6], strict=True)),
        "finish_reasons": row[0][6],
        "attributes": row[0][7],
    }


@pytest.mark.parametrize("path", ["copy", "staged-dedup"])
def test_hostile_strings_in_valid_events_are_stored_verbatim(
    stack: IsolatedStack, event: EventFactory, path: str
) -> None:
    events = [_hostile_telemetry(event, text, i) for i, text in enumerate(HOSTILE)]
    values = [_dumps(e) for e in events]
    if path == "staged-dedup":
        # A redelivered event in the batch sends it through the staging table instead of COPY.
        first = _dumps(event("telemetry"))
        stack.send("llm.telemetry", [first])
        stack.ingest()
        values.insert(3, first)
    stack.send("llm.telemetry", values)

    report = stack.ingest()

    assert report.rows_written["llm_requests"] == len(HOSTILE)
    assert report.duplicates_skipped["llm_requests"] == (path == "staged-dedup")
    assert report.dead_lettered == {}
    assert stack.scalar("select to_regclass('raw.llm_requests')::text") == "raw.llm_requests"
    for sent in events:
        body = sent["body"]
        hostile_key = next(k for k in body if isinstance(body[k], dict))
        assert _stored_telemetry(stack, sent["event_id"]) == {
            "tenant_id": sent["tenant_id"],
            "asset_id": sent["asset_id"],
            "request_model": body["gen_ai.request.model"],
            "response_id": body["gen_ai.response.id"],
            "user_id": body["user.id"],
            "error_type": body["error.type"],
            "finish_reasons": body["gen_ai.response.finish_reasons"],
            "attributes": {hostile_key: body[hostile_key]},
        }


def test_hostile_strings_survive_the_row_by_row_fallback(
    stack: IsolatedStack, event: EventFactory
) -> None:
    # A row PostgreSQL refuses makes the writer insert the table's batch row by row.
    records = [
        event("cost", body={"provider": text, "model": text[:256], "invoice_id": text})
        for text in HOSTILE
    ]
    bad = _dumps(event("cost", body={"request_count": 10**19}))
    stack.send("llm.cost", [bad, *(_dumps(r) for r in records)])

    report = stack.ingest()

    assert report.rows_written["cost_records"] == len(HOSTILE)
    stored = {
        row[0]: row[1:]
        for row in stack.query(
            "select event_id::text, provider, model, invoice_id from raw.cost_records"
        )
    }
    for record in records:
        body = record["body"]
        assert stored[record["event_id"]] == (body["provider"], body["model"], body["invoice_id"])
    assert stack.scalar("select error_class from raw.dead_letter") == "database"


def test_a_long_description_up_to_the_limit_is_kept(
    stack: IsolatedStack, event: EventFactory
) -> None:
    description = "".join(random.Random(3).choice("ab\\\"',\n\u202e\u6f22") for _ in range(8192))
    alert = event("security", body={"description": description})
    stack.send("llm.security", [_dumps(alert)])
    stack.ingest()
    assert stack.scalar("select description from raw.security_alerts") == description


def test_an_empty_string_is_stored_as_empty_not_null(
    stack: IsolatedStack, event: EventFactory
) -> None:
    # Regression: COPY in CSV format read the empty description as NULL.
    alerts = [event("security", body={"description": text}) for text in ("", None, "x")]
    stack.send("llm.security", [_dumps(alert) for alert in alerts])
    stack.ingest()
    stored = dict(stack.query("select event_id::text, description from raw.security_alerts"))
    assert stored == {alert["event_id"]: alert["body"].get("description") for alert in alerts}


def test_pipeline_keeps_going_through_mixed_good_and_bad_messages(
    stack: IsolatedStack, event: EventFactory
) -> None:
    rng = random.Random(11)
    garbage = [b"", b"{", b"null", b"\x00\x01\x02", b'{"event_id": 5}', b"\xc3\x28"]
    values: list[bytes] = []
    good = 0
    for _ in range(600):
        if rng.random() < 0.5:
            values.append(_dumps(event("telemetry")))
            good += 1
        else:
            values.append(rng.choice(garbage) + str(rng.random()).encode() * rng.randrange(2))
    sent = stack.send("llm.telemetry", values)

    report = stack.ingest(batch_max_records=40)

    assert report.rows_written["llm_requests"] == good
    assert stack.count("llm_requests") == good
    assert stack.count("dead_letter") == sent - good
    assert report.messages == sent
    assert sum(stack.stored_offsets().values()) == sent


def test_an_out_of_range_epoch_is_dead_lettered_not_fatal(
    stack: IsolatedStack, event: EventFactory
) -> None:
    # Regression: the normaliser raised OverflowError, crashing this run and every retry.
    values = [_dumps(event("telemetry")), _dumps(event("telemetry", occurred_at=1e30))]
    stack.send("llm.telemetry", [*values, _dumps(event("telemetry"))], key=b"same-partition")
    report = stack.ingest()
    assert report.rows_written["llm_requests"] == 2
    assert stack.scalar("select error_class from raw.dead_letter") in (
        "schema",
        "timestamp_out_of_range",
    )


def test_a_redelivery_and_a_refused_row_in_one_batch_are_handled(
    stack: IsolatedStack, event: EventFactory
) -> None:
    # Regression: the staging path had no fallback; the refused row crashed every retry.
    stored = _dumps(event("cost"))
    stack.send("llm.cost", [stored], key=b"tenant-a")
    stack.ingest()
    # COPY converts and inserts rows in buffered groups: with enough rows between them, the
    # redelivery fails the COPY before the refused row is even read.
    fresh = [_dumps(event("cost")) for _ in range(1_500)]
    refused = _dumps(event("cost", body={"request_count": 10**20}))
    stack.send("llm.cost", [stored, *fresh, refused], key=b"tenant-a")

    report = stack.ingest()

    assert report.rows_written["cost_records"] == len(fresh)
    assert report.duplicates_skipped["cost_records"] == 1
    assert stack.scalar("select error_class from raw.dead_letter") == "database"


def _cost_batch(stack: IsolatedStack, values: list[bytes], start: int) -> Batch:
    """A writer batch of cost messages read from offsets ``start``... of partition 0."""
    topic = stack.topic("llm.cost")
    normalizer = Normalizer(BY_TOPIC["llm.cost"], stack.settings)
    batch = Batch()
    now = datetime.now(UTC)
    for offset, value in enumerate(values, start):
        row = normalizer.normalize(value, 0, offset, now)
        assert isinstance(row, tuple)
        batch.add_row("cost_records", row, Message(topic, 0, offset, None, value))
    batch.offsets[(topic, 0)] = (start, start + len(values))
    return batch


# Regression: the stage table name stayed cached after the savepoint that created it rolled back.
def test_redeliveries_after_a_refused_staging_batch_still_deduplicate(
    stack: IsolatedStack, event: EventFactory
) -> None:
    # The staging table is created inside the savepoint a refused batch rolls back; the writer
    # must not go on believing it exists.
    writer = RawWriter(stack.conn, stack.settings.consumer_group)
    stored = _dumps(event("cost"))
    refused = _dumps(event("cost", body={"request_count": 10**20}))
    fresh = [_dumps(event("cost")) for _ in range(1_500)]
    writer.write(_cost_batch(stack, [stored], 0))
    first = _cost_batch(stack, [stored, *fresh, refused], 1)

    assert writer.write(first).inserted == {"cost_records": 1_500}
    later = writer.write(_cost_batch(stack, [stored, _dumps(event("cost"))], 1_503))

    assert (later.inserted, later.duplicates) == ({"cost_records": 1}, {"cost_records": 1})
    assert stack.count("cost_records") == 1_502
    assert stack.stored_offsets() == {(stack.topic("llm.cost"), 0): 1_505}


def _assert_cli_applies_prefix(monkeypatch: pytest.MonkeyPatch, stack: IsolatedStack) -> None:
    """Fail unless ``llmhub produce file`` sends to the prefixed topic. Asked in-process with a
    fake producer first, so a regression cannot write to the shared unprefixed topics."""
    seen: list[str] = []

    def send_all(producer: Any, messages: Any, progress: bool = False) -> int:
        seen.extend(message.topic for message in messages)
        return len(seen)

    with monkeypatch.context() as patch:
        patch.setattr(sink, "make_producer", lambda bootstrap, **kw: _NullProducer())
        patch.setattr(sink, "send_all", send_all)
        CliRunner().invoke(
            app,
            ["produce", "file", "--topic", "llm.registry", str(Path(__file__))],
            env={"LLMHUB_TOPIC_PREFIX": stack.prefix},
        )
    assert set(seen) == {stack.topic("llm.registry")}


class _NullProducer:
    def close(self) -> None:
        pass


def test_produce_file_cli_sends_lines_byte_for_byte(
    stack: IsolatedStack, event: EventFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # llm.registry has one partition, so the single message sent last ends every batch.
    topic = "llm.registry"
    valid = [_dumps(event("registry")) for _ in range(5)]
    invalid = [b"not json", b'{"event_id": "x"}', b"caf\xe9", b"trailing cr\r", b"", b" "]
    lines = [line for pair in zip(valid, invalid, strict=False) for line in pair] + invalid[5:]
    path = tmp_path / "messages.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    _assert_cli_applies_prefix(monkeypatch, stack)

    stack.run_cli("produce", "file", "--topic", topic, str(path), name="produce-file")
    # A message of its own, last: the dev broker's listed end offset is then exact (conftest).
    stack.send(topic, [_dumps(event("registry"))])
    report = stack.ingest()

    assert report.rows_written["registry_events"] == len(valid) + 1
    dead = stack.query("select raw_value, error_class from raw.dead_letter order by kafka_offset")
    assert [bytes(value) for value, _ in dead] == [line for line in lines if line in invalid]
    assert [error_class for _, error_class in dead] == [
        "invalid_json", "schema", "not_utf8", "invalid_json", "empty", "invalid_json"
    ]  # fmt: skip


def test_dead_letter_replay_stores_fixed_messages_once_and_keeps_the_history(
    stack: IsolatedStack, event: EventFactory
) -> None:
    # The "fix": the size limit was too small for these events; the limit is raised, then replayed.
    big = [_dumps(event("security", body={"description": "x" * 2_000})) for _ in range(3)]
    still_bad = [b"{not json", _dumps(event("security", tenant_id=""))]
    small = _dumps(event("security"))
    stack.send("llm.security", [small, *big, *still_bad], key=b"tenant-a")
    stack.ingest(settings=replace(stack.settings, max_message_bytes=1_000))
    assert stack.count("security_alerts") == 1
    assert stack.count("dead_letter") == 5
    fixed = {"LLMHUB_MAX_MESSAGE_BYTES": "1000000"}

    dry = json.loads(stack.run_cli("dead-letter", "replay", "--dry-run", name="dry", **fixed))
    assert (dry["selected"], dry["stored"], dry["dry_run"]) == (5, 3, True)
    assert stack.count("security_alerts") == 1
    assert stack.scalar("select count(*) from raw.dead_letter where replayed_at is not null") == 0

    only_schema = json.loads(
        stack.run_cli("dead-letter", "replay", "--class", "schema", name="schema", **fixed)
    )
    assert (only_schema["selected"], only_schema["stored"]) == (1, 0)
    assert only_schema["still_rejected"] == {"schema": 1}

    first = json.loads(
        stack.run_cli("dead-letter", "replay", "--topic", "llm.security", name="first", **fixed)
    )
    assert (first["selected"], first["stored"]) == (5, 3)
    assert first["still_rejected"] == {"invalid_json": 1, "schema": 1}
    second = json.loads(stack.run_cli("dead-letter", "replay", name="second", **fixed))
    assert (second["selected"], second["stored"]) == (2, 0)

    assert stack.count("security_alerts") == 4
    assert stack.scalar("select count(distinct event_id) from raw.security_alerts") == 4
    history = stack.query(
        "select raw_value, error_class, replayed_at is not null, replay_outcome "
        "from raw.dead_letter order by kafka_offset"
    )
    assert [(bytes(v), c, r) for v, c, r, _ in history] == [
        *((value, "oversized", True) for value in big),
        (still_bad[0], "invalid_json", False),
        (still_bad[1], "schema", False),
    ]
    assert [outcome.split(":")[0] for *_, outcome in history] == [
        "stored", "stored", "stored", "still rejected (invalid_json)", "still rejected (schema)"
    ]  # fmt: skip
    # Replayed rows keep their original Kafka coordinates.
    offsets = stack.query("select kafka_offset from raw.security_alerts order by kafka_offset")
    assert [offset for (offset,) in offsets] == [0, 1, 2, 3]
