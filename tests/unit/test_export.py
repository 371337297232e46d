"""Export requests: model names, formats, time windows and the SQL they compose (fake catalog)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pytest

from llmhub.mart_export import (
    Column,
    ExportError,
    ExportFormat,
    arrow_schema,
    arrow_type,
    bound_value,
    copy_statement,
    parse_model,
    parse_time,
    plan_export,
    resolve_format,
    resolve_time_column,
    select_query,
)

TSTZ = "timestamp with time zone"

RAW_REQUESTS = [
    Column("event_id", "uuid"),
    Column("occurred_at", TSTZ),
    Column("tenant_id", "text"),
    Column("finish_reasons", "ARRAY", "_text"),
    Column("cost_usd", "numeric", "numeric", 18, 9),
    Column("attributes", "jsonb"),
    Column("ingested_at", TSTZ),
]
HOURLY = [
    Column("request_hour_key", "text"),
    Column("tenant_id", "text"),
    Column("request_hour_at", TSTZ),
    Column("request_date", "date"),
    Column("cost_usd", "numeric"),
]
COST_DAILY = [
    Column("llm_cost_day_key", "text"),
    Column("tenant_id", "text"),
    Column("usage_date", "date"),
    Column("usage_month", "date"),
]
DIM_ASSETS = [
    Column("asset_version_id", "text"),
    Column("tenant_id", "text"),
    Column("valid_from", TSTZ),
    Column("valid_to", TSTZ),
]
KEYS_ONLY = [Column("tenant_id", "text"), Column("note", "text")]


class FakeCatalog:
    def __init__(self, tables: dict[tuple[str, str], list[Column]]) -> None:
        self._tables = tables

    def columns(self, schema: str, table: str) -> list[Column]:
        return list(self._tables.get((schema, table), []))

    def tables(self, schema: str) -> list[str]:
        return sorted(table for s, table in self._tables if s == schema)


CATALOG = FakeCatalog(
    {
        ("raw", "llm_requests"): RAW_REQUESTS,
        ("marts", "fct_llm_requests_hourly"): HOURLY,
        ("marts", "fct_llm_cost_daily"): COST_DAILY,
        ("marts", "dim_assets"): DIM_ASSETS,
        ("marts", "keys_only"): KEYS_ONLY,
    }
)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("fct_llm_cost_daily", ("marts", "fct_llm_cost_daily")),
        ("marts.dim_assets", ("marts", "dim_assets")),
        ("raw.llm_requests", ("raw", "llm_requests")),
        ("  raw.llm_requests ", ("raw", "llm_requests")),
    ],
)
def test_model_names(model: str, expected: tuple[str, str]) -> None:
    assert parse_model(model) == expected


@pytest.mark.parametrize(
    "model",
    [
        "",
        "raw.",
        "a.b.c",
        "staging.stg_raw__llm_requests",
        "public.alembic_version",
        'marts."x"',
        "fct x",
        "marts.fct;drop",
    ],
)
def test_malformed_or_private_models_are_refused(model: str) -> None:
    with pytest.raises(ExportError):
        parse_model(model)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-20", datetime(2026, 11, 20, tzinfo=UTC)),
        ("2026-11-20T06:30:00Z", datetime(2026, 11, 20, 6, 30, tzinfo=UTC)),
        ("2026-11-20T06:30:00", datetime(2026, 11, 20, 6, 30, tzinfo=UTC)),
        ("2026-11-20T08:30:00+02:00", datetime(2026, 11, 20, 6, 30, tzinfo=UTC)),
    ],
)
def test_times_are_utc(text: str, expected: datetime) -> None:
    parsed = parse_time(text)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


def test_bad_time_names_the_option() -> None:
    with pytest.raises(ExportError, match="--since"):
        parse_time("yesterday", "--since")


@pytest.mark.parametrize(
    ("name", "explicit", "expected"),
    [
        ("out.csv", None, ExportFormat.csv),
        ("out.JSONL", None, ExportFormat.json),
        ("out.json", None, ExportFormat.json),
        ("out.parquet", None, ExportFormat.parquet),
        ("out.csv", "parquet", ExportFormat.parquet),
        ("out.data", "json", ExportFormat.json),
    ],
)
def test_format_from_option_or_suffix(
    name: str, explicit: str | None, expected: ExportFormat
) -> None:
    assert resolve_format(Path(name), explicit) is expected


@pytest.mark.parametrize(("name", "explicit"), [("out.data", None), ("out.csv", "xlsx")])
def test_unknown_format_is_refused(name: str, explicit: str | None) -> None:
    with pytest.raises(ExportError):
        resolve_format(Path(name), explicit)


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (RAW_REQUESTS, "occurred_at"),
        # The hourly mart has both buckets: the hour is the finer one.
        (HOURLY, "request_hour_at"),
        (COST_DAILY, "usage_date"),
        (DIM_ASSETS, "valid_from"),
        (KEYS_ONLY, None),
    ],
)
def test_default_time_column(columns: list[Column], expected: str | None) -> None:
    column = resolve_time_column(columns)
    assert (column.name if column else None) == expected


def test_time_column_override_must_be_a_time() -> None:
    assert resolve_time_column(HOURLY, "request_date") == HOURLY[3]
    with pytest.raises(ExportError, match="request_hour_at"):
        resolve_time_column(HOURLY, "tenant_id")
    with pytest.raises(ExportError):
        resolve_time_column(HOURLY, "nope")


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        # A day is in [since, until) when its UTC midnight is: partial days round up.
        (datetime(2026, 11, 20, tzinfo=UTC), date(2026, 11, 20)),
        (datetime(2026, 11, 20, 0, 0, 1, tzinfo=UTC), date(2026, 11, 21)),
        (datetime(2026, 11, 20, 23, 0, tzinfo=timezone(timedelta(hours=-2))), date(2026, 11, 22)),
    ],
)
def test_date_bounds_round_up_to_whole_days(moment: datetime, expected: date) -> None:
    assert bound_value(Column("usage_date", "date"), moment) == expected


def test_timestamp_bounds_pass_through() -> None:
    moment = datetime(2026, 11, 20, 6, tzinfo=UTC)
    assert bound_value(Column("occurred_at", TSTZ), moment) is moment
    naive = bound_value(Column("t", "timestamp without time zone"), moment)
    assert naive == datetime(2026, 11, 20, 6) and naive.tzinfo is None  # type: ignore[union-attr]


def test_unknown_model_lists_what_exists() -> None:
    with pytest.raises(ExportError, match=r"unknown model 'fct_nope'.*marts\.dim_assets"):
        plan_export(CATALOG, "fct_nope")


def test_window_checks() -> None:
    since = datetime(2026, 11, 21, tzinfo=UTC)
    with pytest.raises(ExportError, match="empty window"):
        plan_export(CATALOG, "raw.llm_requests", since, since)
    with pytest.raises(ExportError, match="no time column"):
        plan_export(CATALOG, "keys_only", since=since)
    with pytest.raises(ExportError, match="time zone"):
        plan_export(CATALOG, "raw.llm_requests", since=datetime(2026, 11, 21))
    plan = plan_export(CATALOG, "keys_only")
    assert plan.time_column is None


def test_query_quotes_identifiers_and_binds_the_window() -> None:
    since = datetime(2026, 11, 20, 6, tzinfo=UTC)
    until = datetime(2026, 11, 22, tzinfo=UTC)
    plan = plan_export(CATALOG, "fct_llm_cost_daily", since, until)
    query, params = select_query(plan)
    assert query.as_string(None) == (
        'select "llm_cost_day_key", "tenant_id", "usage_date", "usage_month" '
        'from "marts"."fct_llm_cost_daily" where "usage_date" >= %s and "usage_date" < %s '
        'order by "usage_date"'
    )
    assert params == [date(2026, 11, 21), date(2026, 11, 22)]


def test_open_window_and_no_time_column() -> None:
    plan = plan_export(CATALOG, "raw.llm_requests", until=datetime(2026, 11, 22, tzinfo=UTC))
    query, params = select_query(plan)
    assert 'where "occurred_at" < %s order by "occurred_at"' in query.as_string(None)
    assert len(params) == 1
    query, params = select_query(plan_export(CATALOG, "keys_only"))
    assert query.as_string(None) == 'select "tenant_id", "note" from "marts"."keys_only"'
    assert params == []


def test_copy_statements() -> None:
    plan = plan_export(CATALOG, "raw.llm_requests")
    csv, _ = copy_statement(plan, ExportFormat.csv)
    assert csv.as_string(None).endswith("to stdout (format csv, header)")
    json_lines, _ = copy_statement(plan, ExportFormat.json)
    text = json_lines.as_string(None)
    assert text.startswith("copy (select row_to_json(exported)::text from (select ")
    assert "quote e'\\x01', delimiter e'\\x02'" in text
    with pytest.raises(ExportError):
        copy_statement(plan, ExportFormat.parquet)


def test_json_columns_are_normalised_for_json_lines() -> None:
    plan = plan_export(FakeCatalog({("raw", "t"): [Column("payload", "json")]}), "raw.t")
    text = copy_statement(plan, ExportFormat.json)[0].as_string(None)
    assert '"payload"::jsonb as "payload"' in text


@pytest.mark.parametrize(
    ("column", "arrow", "cast"),
    [
        (Column("a", "text"), pa.string(), None),
        (Column("a", "uuid"), pa.string(), "text"),
        (Column("a", "jsonb"), pa.string(), "text"),
        (Column("a", "smallint"), pa.int16(), None),
        (Column("a", "bigint"), pa.int64(), None),
        (Column("a", "double precision"), pa.float64(), None),
        (Column("a", "numeric", "numeric", 18, 9), pa.decimal128(18, 9), None),
        # The marts' sums are unconstrained numeric: no fixed scale for an Arrow decimal.
        (Column("a", "numeric"), pa.float64(), "double precision"),
        (Column("a", "date"), pa.date32(), None),
        (Column("a", TSTZ), pa.timestamp("us", tz="UTC"), None),
        (Column("a", "ARRAY", "_text"), pa.list_(pa.string()), None),
        (Column("a", "ARRAY", "_int4"), pa.string(), "text"),
        (Column("a", "tsvector"), pa.string(), "text"),
    ],
)
def test_arrow_types(column: Column, arrow: pa.DataType, cast: str | None) -> None:
    assert arrow_type(column) == (arrow, cast)


def test_parquet_query_applies_casts() -> None:
    plan = plan_export(CATALOG, "raw.llm_requests")
    casts = [arrow_type(column)[1] for column in plan.columns]
    text = select_query(plan, casts)[0].as_string(None)
    assert '"event_id"::text as "event_id"' in text
    assert '"attributes"::text as "attributes"' in text
    assert arrow_schema(plan.columns).names == [c.name for c in RAW_REQUESTS]
