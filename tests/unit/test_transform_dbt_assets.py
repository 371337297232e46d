"""The dbt build arguments from run config, and the mart metadata helpers."""

import json
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg
import pytest

from assets.transform.dbt_models import DbtBuildConfig, IncrementalBuildConfig, dbt_build_args
from assets.transform.mart_metadata import MartTiming, covered_until, mart_metadata


def _vars(args: list[str]) -> dict[str, Any]:
    return json.loads(args[args.index("--vars") + 1])


def test_an_ordinary_build_takes_the_project_defaults() -> None:
    assert dbt_build_args(IncrementalBuildConfig()) == ["build"]
    assert dbt_build_args(DbtBuildConfig()) == ["build"]


def test_full_refresh() -> None:
    assert dbt_build_args(DbtBuildConfig(full_refresh=True)) == ["build", "--full-refresh"]


def test_lookback_hours_becomes_a_dbt_var() -> None:
    args = dbt_build_args(IncrementalBuildConfig(lookback_hours=48))

    assert _vars(args) == {"lookback_hours": 48}


def test_lookback_zero_is_passed_not_dropped() -> None:
    # 0 (rebuild the newest bucket only) is falsy; it must still reach dbt.
    assert _vars(dbt_build_args(IncrementalBuildConfig(lookback_hours=0))) == {"lookback_hours": 0}


def test_a_backfill_window_becomes_dbt_vars() -> None:
    args = dbt_build_args(
        IncrementalBuildConfig(backfill_start="2026-11-20", backfill_end="2026-11-22T06:00:00Z")
    )

    assert _vars(args) == {"backfill_start": "2026-11-20", "backfill_end": "2026-11-22T06:00:00Z"}


def test_overridden_vars_skip_the_dbt_unit_tests() -> None:
    # The project's unit tests assume the default lookback; under other vars they fail.
    args = dbt_build_args(IncrementalBuildConfig(lookback_hours=48))

    assert args[args.index("--exclude") + 1] == "test_type:unit"
    assert "--exclude" not in dbt_build_args(IncrementalBuildConfig())


@pytest.mark.parametrize(
    "config",
    [
        IncrementalBuildConfig(lookback_hours=-1),
        IncrementalBuildConfig(full_refresh=True, backfill_start="2026-11-20"),
    ],
    ids=["negative lookback", "backfill with full refresh"],
)
def test_contradictory_options_are_refused(config: IncrementalBuildConfig) -> None:
    with pytest.raises(ValueError):
        dbt_build_args(config)


@pytest.mark.parametrize(
    ("newest", "grain", "expected"),
    [
        (
            datetime(2026, 11, 25, 23, 0, tzinfo=UTC),
            "hour",
            datetime(2026, 11, 26, 0, 0, tzinfo=UTC),
        ),
        (date(2026, 11, 25), "day", datetime(2026, 11, 26, tzinfo=UTC)),
        (date(2026, 12, 31), "day", datetime(2027, 1, 1, tzinfo=UTC)),
        # Monthly SLA reports: the bucket ends with the month, December into January.
        (date(2026, 12, 1), "month", datetime(2027, 1, 1, tzinfo=UTC)),
        (date(2026, 2, 1), "month", datetime(2026, 3, 1, tzinfo=UTC)),
        (datetime(2026, 11, 25, 9, 30, tzinfo=UTC), "event", None),
        (None, "hour", None),
    ],
)
def test_covered_until_is_the_end_of_the_newest_bucket(
    newest: datetime | date | None, grain: str, expected: datetime | None
) -> None:
    assert covered_until(newest, grain) == expected  # type: ignore[arg-type]


class FakeConnection:
    """Answers the two metadata queries in order and records what was asked."""

    def __init__(self, *rows: tuple | None) -> None:
        self.rows = list(rows)
        self.params: list[Any] = []

    def execute(self, query: Any, params: Any = None) -> "FakeConnection":
        self.params.append(params)
        return self

    def fetchone(self) -> tuple | None:
        return self.rows.pop(0)


def test_mart_metadata_reports_rows_range_and_the_last_event_before_the_bucket_end() -> None:
    first = datetime(2026, 11, 24, 10, tzinfo=UTC)
    last = datetime(2026, 11, 25, 23, tzinfo=UTC)
    event = datetime(2026, 11, 25, 23, 59, 1, tzinfo=UTC)
    conn = FakeConnection((42, first, last), (event,))

    metadata = mart_metadata(
        conn,  # type: ignore[arg-type]
        "marts",
        "fct_llm_requests_hourly",
        MartTiming("request_hour_at", "hour", "llm_requests"),
    )

    assert metadata["dagster/row_count"] == dg.MetadataValue.int(42)
    assert metadata["time_range_start"] == dg.MetadataValue.timestamp(first)
    assert metadata["time_range_end"] == dg.MetadataValue.timestamp(last)
    assert metadata["last_event_at"] == dg.MetadataValue.timestamp(event)
    assert conn.params[1] == (datetime(2026, 11, 26, tzinfo=UTC),)


def test_mart_metadata_of_an_empty_daily_mart() -> None:
    conn = FakeConnection((0, None, None), (None,))

    metadata = mart_metadata(
        conn,  # type: ignore[arg-type]
        "marts",
        "fct_llm_requests_daily",
        MartTiming("request_date", "day", "llm_requests"),
    )

    assert metadata["dagster/row_count"] == dg.MetadataValue.int(0)
    assert metadata["time_range_end"] == dg.MetadataValue.text("none")
    assert metadata["last_event_at"] == dg.MetadataValue.text("none")
