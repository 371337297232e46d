"""Settings from the environment, the topic prefix, and where the prefix must be honoured."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from assets.resources import HubResource
from llmhub.cli import app
from llmhub.config import (
    DEFAULT_CONSUMER_GROUP,
    DEFAULT_DATABASE_URL,
    DEFAULT_KAFKA_BOOTSTRAP,
    Settings,
    load_settings,
    redact,
    with_database,
)
from llmhub.contract.topics import TOPICS
from llmhub.ingest.engine import Ingestor
from llmhub.producers import sink


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("LLMHUB_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_defaults_point_at_the_local_stack(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.kafka_bootstrap == DEFAULT_KAFKA_BOOTSTRAP
    assert settings.consumer_group == DEFAULT_CONSUMER_GROUP
    assert settings.topic_prefix == ""
    assert settings.max_event_age_days == 3650
    assert settings.naive_timezone == {}
    assert settings.retention.days["llm_requests"] == 30


def test_environment_overrides(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("LLMHUB_DATABASE_URL", "postgresql://u:p@db:5432/hub")
    clean_env.setenv("LLMHUB_KAFKA_BOOTSTRAP", "k1:9092,k2:9092")
    clean_env.setenv("LLMHUB_CONSUMER_GROUP", "staging-ingest")
    clean_env.setenv("LLMHUB_TOPIC_PREFIX", "staging.")
    clean_env.setenv("LLMHUB_BATCH_MAX_RECORDS", "5000")
    clean_env.setenv("LLMHUB_MAX_MESSAGE_BYTES", "2048")
    clean_env.setenv("LLMHUB_FUTURE_SKEW_S", "1.5")
    clean_env.setenv("LLMHUB_MAX_EVENT_AGE_DAYS", "45")
    clean_env.setenv("LLMHUB_NAIVE_TIMEZONES", " llm.cost=Europe/Paris , llm.registry=UTC,")
    clean_env.setenv("LLMHUB_RETENTION_TELEMETRY_DAYS", "7")
    settings = load_settings()
    assert settings.database_url == "postgresql://u:p@db:5432/hub"
    assert settings.consumer_group == "staging-ingest"
    assert settings.topic("llm.cost") == "staging.llm.cost"
    assert (settings.batch_max_records, settings.max_message_bytes) == (5000, 2048)
    assert settings.future_skew_s == 1.5
    assert settings.max_event_age_days == 45
    assert settings.naive_timezone == {"llm.cost": "Europe/Paris", "llm.registry": "UTC"}
    assert settings.retention.days["llm_requests"] == 7


def test_empty_numbers_fall_back_to_defaults(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("LLMHUB_BATCH_MAX_RECORDS", "")
    clean_env.setenv("LLMHUB_FUTURE_SKEW_S", "")
    settings = load_settings()
    assert (settings.batch_max_records, settings.future_skew_s) == (50_000, 300.0)


def test_malformed_naive_timezones_fail_loudly(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("LLMHUB_NAIVE_TIMEZONES", "llm.cost")
    with pytest.raises(ValueError, match="topic=Zone"):
        load_settings()


def test_dagster_storage_defaults_to_the_dagster_database(clean_env: pytest.MonkeyPatch) -> None:
    expected = "postgresql+psycopg2://postgres@127.0.0.1:5433/dagster"
    assert Settings().dagster_storage_url == expected
    clean_env.setenv("LLMHUB_DAGSTER_STORAGE_URL", "postgresql://elsewhere/dg")
    assert Settings().dagster_storage_url == "postgresql://elsewhere/dg"


@pytest.mark.parametrize(
    ("url", "database", "expected"),
    [
        ("postgresql://postgres@127.0.0.1:5433/llmhub", "llmhub_test", "/llmhub_test"),
        ("postgresql://u:p%40ss@h:5432/llmhub?sslmode=require", "x", "/x?sslmode=require"),
    ],
)
def test_with_database_swaps_only_the_path(url: str, database: str, expected: str) -> None:
    swapped = with_database(url, database)
    assert swapped.endswith(expected)
    assert swapped.split("/")[2] == url.split("/")[2]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:secret@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://postgres@h/db", "postgresql://postgres@h/db"),
    ],
)
def test_redact_hides_passwords(url: str, expected: str) -> None:
    assert redact(url) == expected


@pytest.mark.parametrize("prefix", ["", "t1234abcd.", "staging-"])
def test_topic_prefix_applies_to_every_contract_topic(prefix: str) -> None:
    settings = Settings(topic_prefix=prefix)
    ingestor = Ingestor(settings)
    assert ingestor.topics == [prefix + spec.topic for spec in TOPICS]
    assert set(ingestor.normalizers) == set(ingestor.topics)


def test_naive_zone_is_keyed_by_contract_topic_even_with_a_prefix() -> None:
    settings = Settings(topic_prefix="t1.", naive_timezone={"llm.cost": "Europe/Paris"})
    normalizer = Ingestor(settings, ["llm.cost"]).normalizers["t1.llm.cost"]
    assert normalizer._naive_zone is not None


def test_ingestor_refuses_unknown_topics_and_bad_worker_split() -> None:
    with pytest.raises(ValueError, match="unknown topics"):
        Ingestor(Settings(topic_prefix="t1."), ["t1.llm.cost"])
    with pytest.raises(ValueError, match="worker_index"):
        Ingestor(Settings(), worker_index=2, worker_count=2)


def test_hub_resource_overrides_connection_settings(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("LLMHUB_BATCH_MAX_RECORDS", "1234")
    hub = HubResource(
        database_url="postgresql://h/db",
        kafka_bootstrap="k:9092",
        topic_prefix="t9.",
        consumer_group="g9",
    )
    settings = hub.settings()
    assert (settings.database_url, settings.kafka_bootstrap) == ("postgresql://h/db", "k:9092")
    assert (settings.topic("llm.registry"), settings.consumer_group) == ("t9.llm.registry", "g9")
    assert settings.batch_max_records == 1234


@pytest.fixture
def captured_sends(monkeypatch: pytest.MonkeyPatch) -> list[sink.Message]:
    """Messages the CLI's producer commands would send, captured instead of sent."""
    sent: list[sink.Message] = []

    class FakeProducer:
        def close(self) -> None:
            pass

    def send_all(producer: Any, messages: Iterable[sink.Message], progress: bool = False) -> int:
        sent.extend(messages)
        return len(sent)

    monkeypatch.setattr(sink, "make_producer", lambda bootstrap, **kw: FakeProducer())
    monkeypatch.setattr(sink, "send_all", send_all)
    return sent


@pytest.mark.parametrize(
    "args",
    [
        ["produce", "file", "--topic", "llm.registry", "{path}"],
        ["produce", "synthetic", "--events", "20", "--days", "0.05", "--no-incidents"],
    ],
    ids=["file", "synthetic"],
)
def test_producer_commands_honour_the_topic_prefix(
    clean_env: pytest.MonkeyPatch,
    captured_sends: list[sink.Message],
    tmp_path: Path,
    args: list[str],
) -> None:
    # Regression: producers ignored the prefix and wrote to the shared unprefixed topics.
    lines = tmp_path / "lines.txt"
    lines.write_bytes(b"not json\n{}\n")
    result = CliRunner().invoke(
        app,
        [arg.format(path=lines) for arg in args],
        env={"LLMHUB_TOPIC_PREFIX": "t1."},
    )
    assert result.exit_code == 0, result.output
    assert captured_sends
    assert {m.topic.split(".", 1)[0] for m in captured_sends} == {"t1"}
