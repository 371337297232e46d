"""Export a mart or a raw table to CSV, JSON Lines or Parquet, streamed with bounded memory.

A request names a model (``fct_llm_cost_daily``, ``marts.dim_assets`` or ``raw.llm_requests``),
an optional time window and an output file. The table and its columns are looked up in the
catalog (``information_schema``, so a role exports only what it may read, row-level security
included), identifiers are composed with ``psycopg.sql.Identifier`` and the window bounds are
bound as parameters.

Rows never sit in memory as a whole: CSV and JSON Lines are PostgreSQL's own rendering streamed
from ``COPY ... TO STDOUT`` straight into the file; Parquet is read through a server-side cursor
``chunk_rows`` rows at a time, each chunk written as one row group with a schema fixed up front
from the column types. The file appears under its name only once complete.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
from psycopg import sql

log = logging.getLogger(__name__)

EXPORTABLE_SCHEMAS = ("marts", "raw")
DEFAULT_SCHEMA = "marts"
DEFAULT_CHUNK_ROWS = 10_000

# The time a row is about, by preference: raw events' occurred_at, then the marts' bucket columns
# (dbt_project/models/marts/fct_llm_requests_hourly.yml: the hourly mart has request_hour_at and
# request_date, the hour wins), the type-2 dimensions' validity start, then the bookkeeping
# tables' own timestamps.
TIME_COLUMNS = (
    "occurred_at",
    "request_hour_at",
    "request_date",
    "usage_date",
    "alert_date",
    "violation_date",
    "valid_from",
    "received_at",
    "ran_at",
    "updated_at",
)
TIME_TYPES = ("timestamp with time zone", "timestamp without time zone", "date")

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_SUFFIXES = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


class ExportFormat(StrEnum):
    """Output formats: CSV with a header, JSON Lines (one object per row), Parquet."""

    csv = "csv"
    json = "json"
    parquet = "parquet"


class ExportError(ValueError):
    """The export request cannot be served (unknown model, bad window, unknown format...)."""


@dataclass(frozen=True)
class Column:
    """A column as ``information_schema.columns`` describes it."""

    name: str
    data_type: str
    udt_name: str = ""
    numeric_precision: int | None = None
    numeric_scale: int | None = None


class Catalog(Protocol):
    """What the export needs to know about the database's tables."""

    def columns(self, schema: str, table: str) -> list[Column]:
        """The columns of ``schema.table`` in order; empty if there is no such readable table."""
        ...

    def tables(self, schema: str) -> list[str]:
        """Readable tables and views of ``schema``."""
        ...


class PostgresCatalog:
    """``Catalog`` over ``information_schema``: only objects the connected role can read."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def columns(self, schema: str, table: str) -> list[Column]:
        rows = self.conn.execute(
            """
            select column_name, data_type, udt_name, numeric_precision, numeric_scale
            from information_schema.columns
            where table_schema = %s and table_name = %s
            order by ordinal_position
            """,
            (schema, table),
        ).fetchall()
        return [Column(*row) for row in rows]

    def tables(self, schema: str) -> list[str]:
        rows = self.conn.execute(
            "select table_name from information_schema.tables where table_schema = %s "
            "order by table_name",
            (schema,),
        ).fetchall()
        return [row[0] for row in rows]


@dataclass(frozen=True)
class ExportPlan:
    """A validated export: the table, its columns, and the window on its time column."""

    schema: str
    table: str
    columns: tuple[Column, ...]
    time_column: Column | None
    since: datetime | None
    until: datetime | None

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.table}"


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote."""

    model: str
    format: ExportFormat
    path: Path
    rows: int
    bytes: int
    seconds: float
    time_column: str | None
    since: datetime | None
    until: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "format": str(self.format),
            "path": str(self.path),
            "rows": self.rows,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "time_column": self.time_column,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
        }


ProgressCallback = Callable[[int, int], None]
"""Called as ``(rows, bytes_written)`` after each chunk (rows are approximate for CSV)."""


def parse_model(model: str) -> tuple[str, str]:
    """``(schema, table)`` of a model name: ``fct_x`` and ``marts.fct_x`` are marts,
    ``raw.llm_requests`` is a raw table.

    Raises:
        ExportError: the name is malformed or outside the exportable schemas.
    """
    parts = model.strip().split(".")
    if len(parts) == 1:
        parts = [DEFAULT_SCHEMA, *parts]
    if len(parts) != 2 or not all(_IDENTIFIER.fullmatch(part) for part in parts):
        raise ExportError(
            f"model {model!r} is not a mart name (fct_llm_cost_daily) or schema.table "
            "(raw.llm_requests)"
        )
    schema, table = parts
    if schema not in EXPORTABLE_SCHEMAS:
        raise ExportError(
            f"model {model!r}: only {' and '.join(f'{s}.*' for s in EXPORTABLE_SCHEMAS)} "
            "can be exported"
        )
    return schema, table


def parse_time(text: str, option: str = "time") -> datetime:
    """An ISO-8601 date or time as an aware UTC datetime; without an offset it is UTC.

    Raises:
        ExportError: ``text`` is not ISO-8601.
    """
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ExportError(
            f"{option} {text!r} is not ISO-8601 (2026-11-20 or 2026-11-20T06:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def resolve_format(path: Path, explicit: ExportFormat | str | None = None) -> ExportFormat:
    """The format asked for, else the one ``path``'s suffix names.

    Raises:
        ExportError: neither names a known format.
    """
    if explicit is not None:
        try:
            return ExportFormat(explicit)
        except ValueError:
            known = ", ".join(f.value for f in ExportFormat)
            raise ExportError(f"unknown format {explicit!r} (one of {known})") from None
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        raise ExportError(
            f"cannot tell the format of {path.name!r}: pass --format csv|json|parquet "
            f"or name the file {', '.join(_SUFFIXES)}"
        )
    return ExportFormat(_SUFFIXES[suffix])


def resolve_time_column(columns: Sequence[Column], override: str | None = None) -> Column | None:
    """The column a time window filters on: ``override`` if given, else the first of
    ``TIME_COLUMNS`` the table has with a date or timestamp type, else None.

    Raises:
        ExportError: ``override`` is not a date or timestamp column of the table.
    """
    by_name = {column.name: column for column in columns}
    if override is not None:
        column = by_name.get(override)
        if column is None or column.data_type not in TIME_TYPES:
            candidates = [c.name for c in columns if c.data_type in TIME_TYPES]
            raise ExportError(
                f"time column {override!r} is not a date or timestamp column of the table "
                f"(candidates: {', '.join(candidates) or 'none'})"
            )
        return column
    for name in TIME_COLUMNS:
        column = by_name.get(name)
        if column is not None and column.data_type in TIME_TYPES:
            return column
    return None


def _ceil_date(moment: datetime) -> date:
    """The first UTC date whose midnight is at or after ``moment``."""
    day = moment.astimezone(UTC).date()
    if moment > datetime(day.year, day.month, day.day, tzinfo=UTC):
        day += timedelta(days=1)
    return day


def bound_value(column: Column, moment: datetime) -> datetime | date:
    """``moment`` as a parameter comparable with ``column`` without casting the column (so its
    index serves the filter). A date stands for its UTC day starting at midnight: a day is in
    ``[since, until)`` when its midnight is, so both bounds round up to a whole day."""
    if column.data_type == "date":
        return _ceil_date(moment)
    if column.data_type == "timestamp without time zone":
        return moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def plan_export(
    catalog: Catalog,
    model: str,
    since: datetime | None = None,
    until: datetime | None = None,
    time_column: str | None = None,
) -> ExportPlan:
    """Validate an export request against the catalog.

    Args:
        catalog: where tables and columns are looked up.
        model: ``fct_x``, ``marts.fct_x`` or ``raw.<table>``.
        since, until: window ``[since, until)`` on the time column (aware datetimes).
        time_column: filter on this column instead of the default one.

    Raises:
        ExportError: unknown model, empty window, or a window on a table without a time column.
    """
    schema, table = parse_model(model)
    columns = catalog.columns(schema, table)
    if not columns:
        available = catalog.tables(schema)
        listed = ", ".join(f"{schema}.{name}" for name in available) or "none readable"
        raise ExportError(f"unknown model {model!r}: no table {schema}.{table} ({listed})")
    for name, moment in (("since", since), ("until", until)):
        if moment is not None and moment.tzinfo is None:
            raise ExportError(f"{name} must carry a time zone")
    if since is not None and until is not None and since >= until:
        raise ExportError(f"empty window: since {since.isoformat()} >= until {until.isoformat()}")
    column = resolve_time_column(columns, time_column)
    if column is None and (since is not None or until is not None):
        raise ExportError(
            f"{schema}.{table} has no time column to filter on; export it without "
            "--since/--until or name one with --time-column"
        )
    return ExportPlan(schema, table, tuple(columns), column, since, until)


def arrow_type(column: Column) -> tuple[pa.DataType, str | None]:
    """The Arrow type of a column and the SQL cast that makes psycopg return values Arrow takes
    (None: as loaded). Unconstrained ``numeric`` (the marts' sums) becomes float64: Arrow
    decimals need a fixed scale."""
    kind = column.data_type
    if kind in ("text", "character varying", "character", "name"):
        return pa.string(), None
    if kind in ("uuid", "json", "jsonb", "interval", "inet", "cidr", "xml"):
        return pa.string(), "text"
    simple = {
        "smallint": pa.int16(),
        "integer": pa.int32(),
        "bigint": pa.int64(),
        "real": pa.float32(),
        "double precision": pa.float64(),
        "boolean": pa.bool_(),
        "date": pa.date32(),
        "timestamp with time zone": pa.timestamp("us", tz="UTC"),
        "timestamp without time zone": pa.timestamp("us"),
        "bytea": pa.binary(),
    }
    if kind in simple:
        return simple[kind], None
    if kind == "numeric":
        precision, scale = column.numeric_precision, column.numeric_scale
        if precision is not None and scale is not None and precision <= 38:
            return pa.decimal128(precision, scale), None
        return pa.float64(), "double precision"
    if kind == "ARRAY" and column.udt_name in ("_text", "_varchar"):
        return pa.list_(pa.string()), None
    return pa.string(), "text"


def arrow_schema(columns: Iterable[Column]) -> pa.Schema:
    """The Parquet schema of an export, fixed before the first chunk so that every row group
    agrees (a chunk with a column all null would otherwise infer another type)."""
    return pa.schema([pa.field(c.name, arrow_type(c)[0]) for c in columns])


def _where(plan: ExportPlan) -> tuple[sql.Composable, list[Any]]:
    if plan.time_column is None:
        return sql.SQL(""), []
    column = sql.Identifier(plan.time_column.name)
    clauses: list[sql.Composable] = []
    params: list[Any] = []
    if plan.since is not None:
        clauses.append(sql.SQL("{} >= %s").format(column))
        params.append(bound_value(plan.time_column, plan.since))
    if plan.until is not None:
        clauses.append(sql.SQL("{} < %s").format(column))
        params.append(bound_value(plan.time_column, plan.until))
    if not clauses:
        return sql.SQL(""), []
    return sql.SQL(" where ") + sql.SQL(" and ").join(clauses), params


def select_query(
    plan: ExportPlan, casts: Sequence[str | None] | None = None
) -> tuple[sql.Composed, list[Any]]:
    """``select <columns> from <table> [where <window>] [order by <time column>]`` and its
    parameters; ``casts`` (one per column, or None) wrap columns as ``col::type as col``."""
    items: list[sql.Composable] = []
    for i, column in enumerate(plan.columns):
        ident = sql.Identifier(column.name)
        cast = casts[i] if casts else None
        items.append(sql.SQL("{}::{} as {}").format(ident, sql.SQL(cast), ident) if cast else ident)
    where, params = _where(plan)
    order = (
        sql.SQL(" order by {}").format(sql.Identifier(plan.time_column.name))
        if plan.time_column is not None
        else sql.SQL("")
    )
    query = sql.SQL("select {} from {}{}{}").format(
        sql.SQL(", ").join(items), sql.Identifier(plan.schema, plan.table), where, order
    )
    return query, params


def copy_statement(plan: ExportPlan, fmt: ExportFormat) -> tuple[sql.Composed, list[Any]]:
    """The ``COPY ... TO STDOUT`` of a CSV or JSON Lines export, and its parameters.

    JSON Lines are ``row_to_json`` (columns in table order) copied in CSV mode with control
    characters as quote and delimiter: JSON text never contains them raw, so each line is
    copied verbatim (text mode would double every backslash).
    """
    if fmt is ExportFormat.csv:
        query, params = select_query(plan)
        return sql.SQL("copy ({}) to stdout (format csv, header)").format(query), params
    if fmt is ExportFormat.json:
        # A json (not jsonb) value is embedded verbatim and may hold raw newlines; jsonb's
        # rendering never does.
        casts = ["jsonb" if c.data_type == "json" else None for c in plan.columns]
        query, params = select_query(plan, casts)
        return (
            sql.SQL(
                "copy (select row_to_json(exported)::text from ({}) as exported) to stdout "
                "(format csv, quote e'\\x01', delimiter e'\\x02')"
            ).format(query),
            params,
        )
    raise ExportError(f"{fmt} is not exported through COPY")


def _partial_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.partial")


def export(
    conn: psycopg.Connection,
    plan: ExportPlan,
    fmt: ExportFormat,
    out: Path,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    on_progress: ProgressCallback | None = None,
) -> ExportResult:
    """Stream the rows of ``plan`` into ``out`` (replaced only once the export completes).

    Runs in one read-only transaction (one snapshot) in UTC, so timestamps are written in UTC.

    Args:
        conn: a connection that is not in a transaction; its role's privileges and row-level
            security apply.
        plan: from ``plan_export``.
        fmt: output format.
        out: destination file.
        chunk_rows: rows per server-side fetch and Parquet row group.
        on_progress: called with ``(rows, bytes_written)`` as the export advances.
    """
    if chunk_rows <= 0:
        raise ExportError("chunk_rows must be positive")
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise ExportError("export needs a connection outside a transaction (commit or roll back)")
    started = time.monotonic()
    partial = _partial_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with conn.transaction():
            conn.execute("set transaction read only")
            conn.execute("set local timezone = 'UTC'")
            if fmt is ExportFormat.parquet:
                rows = _write_parquet(conn, plan, partial, chunk_rows, on_progress)
            else:
                rows = _write_copy(conn, plan, fmt, partial, on_progress)
        partial.replace(out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    result = ExportResult(
        model=plan.qualified_name,
        format=fmt,
        path=out,
        rows=rows,
        bytes=out.stat().st_size,
        seconds=time.monotonic() - started,
        time_column=plan.time_column.name if plan.time_column else None,
        since=plan.since,
        until=plan.until,
    )
    log.debug("exported %s rows of %s to %s", result.rows, result.model, out)
    return result


def _write_copy(
    conn: psycopg.Connection,
    plan: ExportPlan,
    fmt: ExportFormat,
    path: Path,
    on_progress: ProgressCallback | None,
) -> int:
    statement, params = copy_statement(plan, fmt)
    header_lines = 1 if fmt is ExportFormat.csv else 0
    written = lines = 0
    with conn.cursor() as cursor, path.open("wb") as sink:
        with cursor.copy(statement, params) as copy:
            for data in copy:
                sink.write(data)
                written += len(data)
                if on_progress is not None:
                    # Quoted CSV values may hold newlines: a progress figure, not the count.
                    lines += bytes(data).count(b"\n")
                    on_progress(max(lines - header_lines, 0), written)
        rows = cursor.rowcount
    return max(rows, 0)


def _write_parquet(
    conn: psycopg.Connection,
    plan: ExportPlan,
    path: Path,
    chunk_rows: int,
    on_progress: ProgressCallback | None,
) -> int:
    types = [arrow_type(column) for column in plan.columns]
    schema = arrow_schema(plan.columns)
    query, params = select_query(plan, [cast for _, cast in types])
    rows = 0
    with (
        conn.cursor(name="llmhub_export") as cursor,
        pq.ParquetWriter(path, schema, compression="zstd") as writer,
    ):
        cursor.itersize = chunk_rows
        cursor.execute(query, params)
        while chunk := cursor.fetchmany(chunk_rows):
            columns = zip(*chunk, strict=True)
            arrays = [
                pa.array(values, type=field.type)
                for values, field in zip(columns, schema, strict=True)
            ]
            writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=schema))
            rows += len(chunk)
            del chunk, arrays
            if on_progress is not None:
                on_progress(rows, path.stat().st_size)
    return rows
