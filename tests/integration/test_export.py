"""``llmhub export`` streams a million raw rows to Parquet, CSV and JSON Lines in bounded memory.

The rows are generated in the database (``generate_series``) in a database of this module's
own, ``llmhub_test_export``, created, migrated and dropped here. Peak memory is the exporting
process's maximum resident set (``wait4``): a bound, not a timing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest
from psycopg import sql

from integration.conftest import TEST_DATABASE
from llmhub.config import Settings, load_settings, redact, with_database
from llmhub.db import migrate

pytestmark = pytest.mark.integration

DATABASE = f"{TEST_DATABASE}_export"
LLMHUB_CLI = Path(sys.executable).with_name("llmhub")
ROWS = 1_000_000
PEAK_RSS_BOUND_MB = 300
# 100 ms apart from here: the rows span 27.8 hours (two daily chunks and a bit).
START = "2026-11-20 00:00:00+00"

# Fat rows (~600 bytes as CSV) so that the table is several times the memory bound.
GENERATE_ROWS = """
insert into raw.llm_requests (
    event_id, occurred_at, tenant_id, asset_id, event_type, source_module, severity,
    schema_version, operation_name, provider, request_model, response_model, response_id, status,
    http_status_code, error_type, finish_reasons, input_tokens, output_tokens, cache_read_tokens,
    latency_ms, time_to_first_token_ms, cost_usd, user_id, attributes, kafka_partition,
    kafka_offset
)
select
    gen_random_uuid(), %(start)s::timestamptz + i * interval '100 ms',
    'tenant-' || (i %% 3), 'app-' || (i %% 7), 'llm_request', 'observatory', 'info', '1.0',
    'chat', 'openai', 'gpt-4o', 'gpt-4o-2024-08-06', repeat(md5(i::text), 4), 'ok', 200, null,
    array['stop', 'length'], i %% 5000, i %% 700, 0, (i %% 10000) / 3.0, (i %% 1000) / 7.0,
    0.000123, 'user-' || (i %% 1000), jsonb_build_object('note', repeat('x', 200)), 0, i
from generate_series(0, %(rows)s - 1) as i
"""


@dataclass(frozen=True)
class ExportRun:
    summary: dict
    peak_rss_mb: float
    stderr: str


def _admin_url(settings: Settings) -> str:
    return with_database(settings.database_url, "postgres")


@pytest.fixture(scope="module")
def export_db() -> Iterator[Settings]:
    """A migrated database holding ``ROWS`` raw requests, dropped afterwards."""
    base = load_settings()
    try:
        with psycopg.connect(_admin_url(base), autocommit=True, connect_timeout=3) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(DATABASE))
            )
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(DATABASE)))
    except psycopg.OperationalError as exc:
        message = f"TimescaleDB at {redact(base.database_url)} unreachable: {exc}"
        if os.environ.get("LLMHUB_REQUIRE_STACK") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    settings = replace(base, database_url=with_database(base.database_url, DATABASE))
    try:
        migrate(settings)
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute(GENERATE_ROWS, {"start": START, "rows": ROWS})
            conn.execute("analyze raw.llm_requests")
        yield settings
    finally:
        with psycopg.connect(_admin_url(base), autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(DATABASE))
            )


def _vm_hwm_mb(pid: int) -> float | None:
    """The process's own peak RSS (VmHWM), or None once it has exited."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_export(settings: Settings, *args: str) -> ExportRun:
    """Run ``llmhub export ARGS --json`` and measure the process's peak resident memory.

    VmHWM is sampled while it runs. ``ru_maxrss`` cannot be used: Linux carries the forking
    pytest process's peak over the exec into the child's figure (the export read as 507 MB in
    the full suite, 240 MB alone).
    """
    env = {**os.environ, "LLMHUB_DATABASE_URL": settings.database_url}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [str(LLMHUB_CLI), "export", *args, "--json"], env=env, stdout=out, stderr=err
        )
        peak = 0.0
        while proc.poll() is None:
            sample = _vm_hwm_mb(proc.pid)
            if sample is not None:
                peak = max(peak, sample)
            time.sleep(0.02)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    assert proc.returncode == 0, f"llmhub export {' '.join(args)} failed:\n{stderr}"
    assert peak > 0, "no memory sample was taken"
    return ExportRun(json.loads(stdout.strip().splitlines()[-1]), peak, stderr)


def table_mb(settings: Settings) -> float:
    with psycopg.connect(settings.database_url) as conn:
        size = conn.execute("select hypertable_size('raw.llm_requests')").fetchone()[0]
    return size / 2**20


def test_parquet_export_of_a_million_rows_stays_in_bounded_memory(
    export_db: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "requests.parquet"
    run = run_export(export_db, "--model", "raw.llm_requests", str(out))

    assert run.summary["rows"] == ROWS
    metadata = pq.ParquetFile(out).metadata
    assert metadata.num_rows == ROWS
    assert metadata.num_row_groups > 1
    # Bounded, not proportional: the data is several times the bound.
    assert table_mb(export_db) > 2 * PEAK_RSS_BOUND_MB
    assert run.peak_rss_mb < PEAK_RSS_BOUND_MB, f"peak RSS {run.peak_rss_mb:.0f} MB"

    first = pq.ParquetFile(out).read_row_group(0).slice(0, 1).to_pylist()[0]
    assert first["finish_reasons"] == ["stop", "length"]
    assert first["occurred_at"].isoformat() == "2026-11-20T00:00:00+00:00"
    assert str(first["cost_usd"]) == "0.000123000"
    assert not list(tmp_path.glob(".*.partial"))


def test_csv_export_of_a_million_rows_streams(export_db: Settings, tmp_path: Path) -> None:
    out = tmp_path / "requests.csv"
    run = run_export(export_db, "--model", "raw.llm_requests", str(out))

    assert run.summary["rows"] == ROWS
    with out.open("rb") as lines:
        header = next(lines)
        count = sum(1 for _ in lines)
    assert header.startswith(b"event_id,occurred_at,tenant_id,")
    assert count == ROWS
    assert out.stat().st_size > PEAK_RSS_BOUND_MB * 2**20
    assert run.peak_rss_mb < PEAK_RSS_BOUND_MB, f"peak RSS {run.peak_rss_mb:.0f} MB"


def test_json_lines_export_of_a_window(export_db: Settings, tmp_path: Path) -> None:
    out = tmp_path / "window.jsonl"
    # 01:00Z to 02:30Z, the end given with an offset: 1.5 h of rows 100 ms apart.
    since, until = "2026-11-20T01:00:00Z", "2026-11-20T04:30:00+02:00"
    run = run_export(
        export_db, "--model", "raw.llm_requests", "--since", since, "--until", until, str(out)
    )
    with psycopg.connect(export_db.database_url) as conn:
        expected = conn.execute(
            "select count(*) from raw.llm_requests where occurred_at >= %s and occurred_at < %s",
            (since, until),
        ).fetchone()[0]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == run.summary["rows"] == expected == 54_000
    assert list(rows[0])[:3] == ["event_id", "occurred_at", "tenant_id"]
    assert rows[0]["occurred_at"] == "2026-11-20T01:00:00+00:00"
    assert rows[0]["attributes"] == {"note": "x" * 200}
    assert rows[0]["finish_reasons"] == ["stop", "length"]
    assert rows[0]["cost_usd"] == 0.000123


def test_unknown_model_is_a_clear_error(export_db: Settings, tmp_path: Path) -> None:
    env = {**os.environ, "LLMHUB_DATABASE_URL": export_db.database_url, "COLUMNS": "200"}
    result = subprocess.run(
        [str(LLMHUB_CLI), "export", "--model", "fct_does_not_exist", str(tmp_path / "x.csv")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "unknown model 'fct_does_not_exist'" in result.stderr
    assert not (tmp_path / "x.csv").exists()
