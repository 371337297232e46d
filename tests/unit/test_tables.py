"""Column layout of the raw tables: row shape, and agreement with the model and the migration."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest

from llmhub.config import Settings
from llmhub.contract.models import EVENT_MODELS
from llmhub.contract.topics import TOPICS
from llmhub.db import MIGRATIONS_DIR
from llmhub.ingest.normalize import Normalizer
from llmhub.ingest.tables import ENVELOPE_COLUMNS, TABLES, TRAILER_COLUMNS

EventFactory = Callable[..., dict[str, Any]]


def _raw_schema_migration() -> ModuleType:
    path = MIGRATIONS_DIR / "versions" / "0001_raw_schema.py"
    spec = importlib.util.spec_from_file_location("raw_schema_migration", Path(path))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _declared_columns(ddl: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"^\s*(\w+) [a-z]", ddl, flags=re.MULTILINE)]


@pytest.mark.parametrize("spec", TOPICS, ids=lambda spec: spec.table)
def test_row_has_one_value_per_column(event: EventFactory, spec: Any) -> None:
    table = TABLES[spec.table]
    now = datetime.now(UTC)
    row = Normalizer(spec, Settings()).normalize(
        orjson.dumps(event(spec.family, body={"extra": 1})), 0, 0, now
    )
    assert isinstance(row, tuple)
    assert len(row) == len(table.columns)
    assert len(set(table.columns)) == len(table.columns)


@pytest.mark.parametrize("spec", TOPICS, ids=lambda spec: spec.table)
def test_columns_match_the_migration(spec: Any) -> None:
    # A column added to the model but not to the migration fails every COPY into that table.
    migration = _raw_schema_migration()
    envelope = [c for c in _declared_columns(migration.ENVELOPE) if c != "ingested_at"]
    declared = envelope[: len(ENVELOPE_COLUMNS)] + _declared_columns(migration.BODIES[spec.table])
    declared += envelope[len(ENVELOPE_COLUMNS) :]
    assert tuple(declared) == TABLES[spec.table].columns
    assert tuple(envelope[len(ENVELOPE_COLUMNS) :]) == TRAILER_COLUMNS


@pytest.mark.parametrize("spec", TOPICS, ids=lambda spec: spec.table)
def test_body_columns_are_body_fields(spec: Any) -> None:
    body_model = EVENT_MODELS[spec.family].model_fields["body"].annotation
    assert set(TABLES[spec.table].body_columns) <= set(body_model.model_fields)


def test_finish_reasons_become_a_quoted_text_array_literal(event: EventFactory) -> None:
    # The server parses the literal for the text[] column (COPY and INSERT alike); the round
    # trip of hostile elements is checked against PostgreSQL in tests/integration.
    spec = TOPICS[0]
    reasons = ["stop", 'a "quoted", {reason}', "back\\slash", ""]
    row = Normalizer(spec, Settings()).normalize(
        orjson.dumps(event("telemetry", body={"gen_ai.response.finish_reasons": reasons})),
        0,
        0,
        datetime.now(UTC),
    )
    assert isinstance(row, tuple)
    literal = row[TABLES[spec.table].columns.index("finish_reasons")]
    assert literal == '{"stop","a \\"quoted\\", {reason}","back\\\\slash",""}'


def test_qualified_names() -> None:
    assert {t.qualified_name for t in TABLES.values()} == {f"raw.{s.table}" for s in TOPICS}
