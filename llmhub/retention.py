"""Retention of raw data: drop whole chunks older than each table's window.

``drop_chunks`` works on the Apache-licensed TimescaleDB build, where ``add_retention_policy``
is refused, so the schedule lives in Dagster instead of the database.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetentionResult:
    table: str
    keep_days: int
    dropped_chunks: list[str]


def apply_retention(
    conn: psycopg.Connection, keep_days: dict[str, int], dead_letter_days: int | None = None
) -> list[RetentionResult]:
    """Drop chunks of ``raw.<table>`` entirely older than ``keep_days[table]`` days.

    Each table's outcome is recorded in ``raw.retention_runs``.
    Chunks straddling the cut-off are kept, so a table may hold up to one chunk (a day) more
    than its window; rows newer than the window are never removed.
    """
    results = []
    for table, days in keep_days.items():
        if days <= 0:
            raise ValueError(f"retention for {table} must be positive, got {days}")
        # drop_chunks needs the table's owner; this function (migration 0007) runs it as the
        # owner for the raw hypertables only, so the Dagster role need not own them.
        rows = conn.execute("select raw.drop_expired_chunks(%s, %s)", (table, days)).fetchall()
        dropped = [row[0] for row in rows]
        conn.execute(
            "insert into raw.retention_runs (table_name, keep_days, dropped_chunks) "
            "values (%s, %s, %s)",
            (table, days, dropped),
        )
        if dropped:
            log.info("raw.%s: dropped %d chunks older than %d days", table, len(dropped), days)
        results.append(RetentionResult(table, days, dropped))
    if dead_letter_days is not None:
        deleted = conn.execute(
            "delete from raw.dead_letter where received_at < now() - make_interval(days => %s)",
            (dead_letter_days,),
        ).rowcount
        results.append(RetentionResult("dead_letter", dead_letter_days, [f"{deleted} rows"]))
    return results
