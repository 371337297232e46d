"""The event contract: accepted names, timestamp forms, derived fields and the published files."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from llmhub.config import Settings
from llmhub.contract.models import (
    EVENT_MODELS,
    SCHEMA_VERSION,
    TelemetryEvent,
    epoch_to_datetime,
)
from llmhub.contract.schema_export import export
from llmhub.contract.topics import BY_FAMILY, BY_TOPIC, RAW_TABLES, TOPICS
from llmhub.ingest.normalize import ErrorClass, Normalizer, Rejection
from llmhub.ingest.tables import TABLES

EventFactory = Callable[..., dict[str, Any]]

NOW = datetime(2026, 3, 12, 12, 0, tzinfo=UTC)
NEW_YEAR = datetime(2026, 1, 1, tzinfo=UTC)
NEW_YEAR_S = 1_767_225_600


def _telemetry(event: EventFactory, **body: Any) -> TelemetryEvent:
    return TelemetryEvent.model_validate(event("telemetry", body=body))


def _stored_time(
    event: EventFactory, occurred_at: Any, settings: Settings | None = None
) -> datetime | Rejection:
    """What the normaliser stores as occurred_at for a telemetry event (or its rejection)."""
    spec = BY_TOPIC["llm.telemetry"]
    value = orjson.dumps(event("telemetry", occurred_at=occurred_at))
    outcome = Normalizer(spec, settings or Settings()).normalize(value, 0, 0, NOW)
    if isinstance(outcome, Rejection):
        return outcome
    return outcome[TABLES[spec.table].columns.index("occurred_at")]


def test_otel_names_map_to_columns(event: EventFactory) -> None:
    body = _telemetry(event, **{"gen_ai.usage.cache_read.input_tokens": 30}).body
    assert (body.operation_name, body.provider, body.request_model) == ("chat", "openai", "gpt-4o")
    assert body.response_model == "gpt-4o-2024-08-06"
    assert (body.input_tokens, body.output_tokens, body.cache_read_tokens) == (120, 45, 30)
    assert body.finish_reasons == ["stop"]
    assert body.user_id == "user-1"
    assert body.attributes() == {}


def test_older_otel_names_are_mapped(event: EventFactory) -> None:
    body = _telemetry(
        event,
        **{
            "gen_ai.provider.name": None,
            "gen_ai.usage.input_tokens": None,
            "gen_ai.usage.output_tokens": None,
            "gen_ai.system": "anthropic",
            "gen_ai.usage.prompt_tokens": 11,
            "gen_ai.usage.completion_tokens": 22,
        },
    ).body
    assert (body.provider, body.input_tokens, body.output_tokens) == ("anthropic", 11, 22)
    assert body.attributes() == {}


def test_unknown_body_keys_are_kept_as_attributes(event: EventFactory) -> None:
    extra = {"gen_ai.request.temperature": 0.2, "deployment": {"region": "eu-west-1"}, "tags": [1]}
    body = _telemetry(event, **extra).body
    assert body.attributes() == extra


def test_unknown_envelope_keys_are_rejected(event: EventFactory) -> None:
    with pytest.raises(ValidationError, match="trace_id"):
        TelemetryEvent.model_validate(event("telemetry", trace_id="abc"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (NEW_YEAR_S, NEW_YEAR),
        (NEW_YEAR_S + 0.5, NEW_YEAR + timedelta(milliseconds=500)),
        (NEW_YEAR_S * 1_000 + 250, NEW_YEAR + timedelta(milliseconds=250)),
        (NEW_YEAR_S * 1_000_000 + 7, NEW_YEAR + timedelta(microseconds=7)),
        (NEW_YEAR_S * 1_000_000_000, NEW_YEAR),
        (str(NEW_YEAR_S * 1_000), NEW_YEAR),
    ],
    ids=["s", "s-fraction", "ms", "us", "ns", "ms-as-digit-string"],
)
def test_epoch_unit_is_told_by_magnitude(
    event: EventFactory, value: float | str, expected: datetime
) -> None:
    assert TelemetryEvent.model_validate(event("telemetry", occurred_at=value)).occurred_at == (
        expected
    )
    assert epoch_to_datetime(float(value)) == expected


@pytest.mark.parametrize(
    "occurred_at",
    [
        NEW_YEAR_S,
        NEW_YEAR_S * 1_000,
        NEW_YEAR_S * 1_000_000,
        NEW_YEAR_S * 1_000_000_000,
        "2026-01-01T00:00:00Z",
        "2026-01-01T02:00:00+02:00",
        "2025-12-31T19:00:00-05:00",
        "2026-01-01T05:30:00+05:30",
    ],
)
def test_every_timestamp_form_is_stored_in_utc(event: EventFactory, occurred_at: Any) -> None:
    stored = _stored_time(event, occurred_at)
    assert stored == NEW_YEAR
    assert isinstance(stored, datetime) and stored.utcoffset() == timedelta(0)


def test_naive_timestamp_is_rejected_without_a_zone(event: EventFactory) -> None:
    outcome = _stored_time(event, "2026-01-15T12:00:00")
    assert isinstance(outcome, Rejection)
    assert outcome.error_class is ErrorClass.naive_timestamp


@pytest.mark.parametrize(
    ("naive", "expected_utc"),
    [
        ("2026-01-15T12:00:00", datetime(2026, 1, 15, 11, 0, tzinfo=UTC)),  # CET, +01:00
        ("2025-07-15T12:00:00", datetime(2025, 7, 15, 10, 0, tzinfo=UTC)),  # CEST, +02:00
    ],
)
def test_naive_timestamp_uses_the_topics_zone(
    event: EventFactory, naive: str, expected_utc: datetime
) -> None:
    settings = Settings(naive_timezone={"llm.telemetry": "Europe/Berlin"})
    assert _stored_time(event, naive, settings) == expected_utc


def test_a_zone_configured_for_another_topic_does_not_apply(event: EventFactory) -> None:
    settings = Settings(naive_timezone={"llm.cost": "Europe/Berlin"})
    outcome = _stored_time(event, "2026-01-15T12:00:00", settings)
    assert isinstance(outcome, Rejection)
    assert outcome.error_class is ErrorClass.naive_timestamp


@pytest.mark.parametrize(
    ("ahead", "accepted"),
    [(timedelta(seconds=299), True), (timedelta(seconds=301), False)],
)
def test_future_skew_limit(event: EventFactory, ahead: timedelta, accepted: bool) -> None:
    outcome = _stored_time(event, (NOW + ahead).isoformat(), Settings(future_skew_s=300))
    assert isinstance(outcome, datetime) is accepted
    if not accepted:
        assert isinstance(outcome, Rejection)
        assert outcome.error_class is ErrorClass.timestamp_out_of_range


@pytest.mark.parametrize(
    ("body", "latency_ms", "ttft_ms"),
    [
        ({"latency_ms": 250.0}, 250.0, 140.0),
        ({"latency_ms": None, "latency_s": 1.5}, 1500.0, 140.0),
        ({"latency_ms": None, "gen_ai.client.operation.duration": 0.25}, 250.0, 140.0),
        ({"time_to_first_token_ms": None, "gen_ai.server.time_to_first_token": 0.08}, 812.5, 80.0),
        ({"time_to_first_token_ms": None, "time_to_first_token_s": 0.5}, 812.5, 500.0),
        ({"latency_ms": 10.0, "latency_s": 99.0}, 10.0, 140.0),
    ],
)
def test_seconds_are_mapped_to_milliseconds(
    event: EventFactory, body: dict[str, Any], latency_ms: float, ttft_ms: float
) -> None:
    parsed = _telemetry(event, **body).body
    assert parsed.latency_ms == pytest.approx(latency_ms)
    assert parsed.time_to_first_token_ms == pytest.approx(ttft_ms)


def test_latency_is_required(event: EventFactory) -> None:
    with pytest.raises(ValidationError, match="latency_ms"):
        _telemetry(event, latency_ms=None)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, "ok"),
        ({"http.response.status_code": 200}, "ok"),
        ({"http.response.status_code": 429}, "rate_limited"),
        ({"error.type": "429"}, "rate_limited"),
        ({"http.response.status_code": 429, "error.type": "RateLimitError"}, "rate_limited"),
        ({"error.type": "timeout"}, "error"),
        ({"http.response.status_code": 503}, "error"),
        ({"http.response.status_code": 500, "status": "ok"}, "ok"),
    ],
)
def test_status_is_derived_when_absent(
    event: EventFactory, body: dict[str, Any], status: str
) -> None:
    assert _telemetry(event, **body).body.status == status


@pytest.mark.parametrize("version", ["1.0", "1.7", "1.12"])
def test_schema_major_version_1_is_accepted(event: EventFactory, version: str) -> None:
    assert TelemetryEvent.model_validate(event("telemetry", schema_version=version))


@pytest.mark.parametrize("version", ["2.0", "0.9", "1", "1.0-beta", "v1.0"])
def test_other_schema_versions_are_rejected(event: EventFactory, version: str) -> None:
    with pytest.raises(ValidationError, match="schema_version"):
        TelemetryEvent.model_validate(event("telemetry", schema_version=version))


def test_schema_version_defaults_to_current(event: EventFactory) -> None:
    payload = event("telemetry")
    del payload["schema_version"]
    assert TelemetryEvent.model_validate(payload).schema_version == SCHEMA_VERSION


def test_severity_is_case_insensitive(event: EventFactory) -> None:
    assert TelemetryEvent.model_validate(event("telemetry", severity="HIGH")).severity == "high"


@pytest.mark.parametrize("family", sorted(BY_FAMILY))
def test_every_family_accepts_its_example_and_refuses_another_event_type(
    event: EventFactory, family: str
) -> None:
    model = EVENT_MODELS[family]
    assert model.model_validate(event(family))
    with pytest.raises(ValidationError, match="event_type"):
        model.model_validate(event(family, event_type="something_else"))


def test_topics_tables_and_models_line_up() -> None:
    assert set(EVENT_MODELS) == {spec.family for spec in TOPICS}
    assert set(RAW_TABLES) == set(TABLES)
    assert all(spec.topic.startswith("llm.") for spec in TOPICS)


def test_published_schemas_and_docs_are_current() -> None:
    # Contract edits without `llmhub contract export` left stale files for producers.
    assert export(check=True) == []


def test_an_absurd_epoch_is_a_validation_error(event: EventFactory) -> None:
    # Regression: fromtimestamp's OverflowError escaped pydantic and crashed the ingester.
    with pytest.raises(ValidationError, match="occurred_at"):
        TelemetryEvent.model_validate(event("telemetry", occurred_at=1e30))
