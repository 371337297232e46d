"""Incidents as text: what ``make demo`` and the CLI print after the anomalies."""

from __future__ import annotations

from datetime import datetime

import psycopg
from rich.console import Console
from rich.table import Table

RECENT = """
select incident_id, status, severity, root_cause_type, root_cause_entity, confidence,
    member_count, excess_cost_usd, impact_score, opened_at, explanation
from analytics.incidents
where updated_at >= %s
order by impact_score desc, opened_at
limit %s
"""


def incidents_table(conn: psycopg.Connection, since: datetime, limit: int = 10) -> Table:
    """The ``limit`` most impactful incidents written or updated since ``since`` (a run's start),
    as a rich table."""
    table = Table(title="incidents of this run (analytics.incidents)")
    for column in ("id", "status", "root cause", "conf", "members", "excess $", "impact"):
        table.add_column(column)
    for row in conn.execute(RECENT, (since, limit)).fetchall():
        (
            incident_id,
            status,
            severity,
            cause_type,
            entity,
            confidence,
            members,
            excess,
            impact,
            _opened,
            _explanation,
        ) = row
        table.add_row(
            incident_id[:8],
            f"{status}/{severity}",
            f"{cause_type} {entity}",
            f"{confidence:.2f}",
            str(members),
            f"{excess:,.2f}",
            f"{impact:.0f}",
        )
    return table


def print_incidents(
    conn: psycopg.Connection, since: datetime, console: Console | None = None, limit: int = 10
) -> int:
    """Print the incidents written since ``since`` with the top one's explanation; returns how
    many rows the table shows."""
    console = console or Console()
    table = incidents_table(conn, since, limit)
    console.print(table)
    top = conn.execute(RECENT, (since, 1)).fetchone()
    if top is not None:
        console.print(f"[bold]{top[0][:8]}[/]: {top[-1]}")
    return table.row_count
