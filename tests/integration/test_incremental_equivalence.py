"""Incremental runs and backfills of the request marts give exactly what a full refresh gives.

Raw requests are generated in SQL (deterministic, no broker needed) into a database of this
module's own. The marts are built, more data arrives (including late events inside the
look-back window), an incremental run folds it in; the result must equal a full refresh row for
row and column for column. Then a day older than the look-back is corrupted in the marts and a
backfill of that window must repair it exactly.
"""

import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from assets.resources.dbt import DBT_EXECUTABLE, dbt_cli_env
from integration.conftest import TEST_DATABASE
from integration.test_dbt_assets import fresh_database
from llmhub.config import Settings

pytestmark = pytest.mark.integration

DATABASE = f"{TEST_DATABASE}_incremental"
PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"
MARTS = {
    "fct_llm_requests_hourly": "request_hour_key",
    "fct_llm_requests_daily": "request_day_key",
}
START = datetime(2026, 11, 1, tzinfo=UTC)
SPACING_S = 11

INSERT_REQUESTS = """
insert into raw.llm_requests (
    event_id, occurred_at, tenant_id, asset_id, event_type, source_module, severity,
    schema_version, operation_name, provider, request_model, status, input_tokens,
    output_tokens, cache_read_tokens, latency_ms, time_to_first_token_ms, cost_usd,
    kafka_partition, kafka_offset
)
select
    md5(%(salt)s || i::text)::uuid,
    %(start)s::timestamptz + make_interval(secs => i * %(spacing)s::int),
    'tenant-' || (i %% 3),
    'app-' || (i %% 4),
    'llm_request', 'observatory', 'info', '1.0', 'chat', 'openai',
    (array['gpt-4o', 'gpt-4o-mini'])[1 + i %% 2],
    case when i %% 53 = 0 then 'error' when i %% 97 = 0 then 'rate_limited' else 'ok' end,
    100 + i %% 500,
    10 + i %% 300,
    (i %% 7) * 10,
    200 + (i * 7919) %% 5000,
    50 + (i * 31) %% 400,
    (100 + i %% 500) * 2.5e-6 + (10 + i %% 300) * 1e-5,
    0,
    i + %(offset)s::bigint
from generate_series(%(first)s::int, %(last)s::int) as i
"""


def insert_requests(settings: Settings, first: int, last: int, salt: str, offset: int) -> None:
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(
            INSERT_REQUESTS,
            {
                "salt": salt,
                "start": START,
                "spacing": SPACING_S,
                "first": first,
                "last": last,
                "offset": offset,
            },
        )


def dbt(settings: Settings, target: Path, *args: str) -> None:
    env = {**os.environ, **dbt_cli_env(settings.database_url)}
    result = subprocess.run(
        [DBT_EXECUTABLE, *args, "--profiles-dir", str(PROJECT_DIR), "--target-path", str(target)],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:]


def snapshot(settings: Settings) -> dict[str, list[tuple]]:
    with psycopg.connect(settings.database_url) as conn:
        return {
            mart: conn.execute(
                sql.SQL("select * from {} order by {}").format(
                    sql.Identifier("marts", mart), sql.Identifier(key)
                )
            ).fetchall()
            for mart, key in MARTS.items()
        }


@pytest.fixture(scope="module")
def settings() -> Iterator[Settings]:
    with fresh_database(DATABASE) as test_settings:
        yield test_settings


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dbt's target directory for this module.

    Regression: the runs wrote dbt_project/target, whose manifest the code location loads, and
    left this test's manifest there for the tests after it.
    """
    return tmp_path_factory.mktemp("dbt-target")


def test_incremental_run_and_backfill_equal_a_full_refresh(
    settings: Settings, target: Path
) -> None:
    per_day = 86_400 // SPACING_S
    models = ["--select", "+fct_llm_requests_hourly", "+fct_llm_requests_daily"]
    # Two and a half days first, then the rest of day three plus late events 2 h old.
    cutoff = int(per_day * 2.5)
    insert_requests(settings, 0, cutoff, "a", 0)
    dbt(settings, target, "run", *models)
    insert_requests(settings, cutoff + 1, per_day * 3, "a", 0)
    late_from = cutoff - (2 * 3600) // SPACING_S
    insert_requests(settings, late_from, late_from + 200, "late", 10_000_000)
    dbt(settings, target, "run", "--select", *MARTS)
    incremental = snapshot(settings)

    dbt(settings, target, "run", "--full-refresh", "--select", *MARTS)
    full = snapshot(settings)
    assert all(full.values()), "the marts are empty: nothing was compared"
    assert incremental == full

    # Day one is far outside the 6-hour look-back: only an explicit backfill reaches it.
    day = (START + timedelta(days=1)).date()
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(
            "update marts.fct_llm_requests_hourly set request_count = request_count + 1 "
            "where request_hour_at >= %s and request_hour_at < %s",
            (day, day + timedelta(days=1)),
        )
        conn.execute(
            "update marts.fct_llm_requests_daily set request_count = request_count + 1 "
            "where request_date = %s",
            (day,),
        )
    assert snapshot(settings) != full
    window = f'{{backfill_start: "{day}", backfill_end: "{day + timedelta(days=1)}"}}'
    dbt(settings, target, "run", "--select", *MARTS, "--vars", window)
    assert snapshot(settings) == full
