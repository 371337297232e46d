"""Per-tenant quotas in PostgreSQL, shared by every API process.

Token buckets (ingest events/s, queries/s) and the monthly event count live in ``api.*`` tables
(migration 0010) and change in one function call each, under the bucket's row lock. PostgreSQL,
not Redis: it is already the one service every API process reaches, survives restarts, and one
round trip (~0.3 ms here) per request is far below the request's own cost; Redis would add a
service to run and secure for no measurable gain at these rates.
"""

from __future__ import annotations

from datetime import UTC, datetime

from psycopg_pool import AsyncConnectionPool

from llmhub.api.problems import Problem, retry_after
from llmhub.config import ApiSettings


def _seconds_to_next_month(now: datetime) -> float:
    first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    nxt = (
        first.replace(year=first.year + 1, month=1)
        if first.month == 12
        else first.replace(month=first.month + 1)
    )
    return (nxt - now).total_seconds()


class Quotas:
    def __init__(self, settings: ApiSettings, pool: AsyncConnectionPool) -> None:
        self._s = settings
        self._pool = pool

    async def _take(self, tenant: str, bucket: str, n: float, rate: float, burst: float) -> None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "select api.take_tokens(%s, %s, %s, %s, %s)", (tenant, bucket, n, rate, burst)
            )
            row = await cur.fetchone()
        wait = row[0] if row else 0.0
        if wait > 0:
            raise Problem(
                429,
                "rate-limited",
                f"tenant {bucket} rate exceeded ({rate:g}/s, burst {burst:g}); retry later",
                retry_after(min(wait, 3600.0)),
            )

    async def ingest(self, tenant: str, events: int) -> None:
        """Spend ``events`` ingest tokens, or raise 429 with Retry-After."""
        if events:
            await self._take(
                tenant, "ingest", events, self._s.ingest_rate_per_s, self._s.ingest_burst
            )

    async def count_month(self, tenant: str, events: int) -> None:
        """Add ``events`` to this month's count, or raise 429 if it would pass the quota."""
        if not events:
            return
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "select api.count_events(%s, %s, %s)", (tenant, events, self._s.monthly_events)
            )
            row = await cur.fetchone()
        if row is None or row[0] is None:
            raise Problem(
                429,
                "monthly-quota-exceeded",
                f"tenant monthly event quota ({self._s.monthly_events}) would be exceeded",
                retry_after(_seconds_to_next_month(datetime.now(UTC))),
            )

    async def query(self, tenant: str) -> None:
        await self._take(tenant, "query", 1, self._s.query_rate_per_s, self._s.query_burst)
