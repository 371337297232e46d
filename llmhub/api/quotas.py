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

    async def admit_ingest(self, tenant: str, events: int, accepted: int) -> None:
        """Spend ``events`` ingest tokens and count ``accepted`` events into the month, in one
        round trip, under the tenant's own limits (``api.tenant_quotas``) or the defaults.

        Raises:
            Problem: 429 with Retry-After when the rate or the monthly quota is exceeded (the
                month is not counted when the rate refused the request).
        """
        if not events and not accepted:
            return
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "select wait_s, month_full_at from api.admit_ingest(%s, %s, %s, %s, %s, %s)",
                (
                    tenant,
                    events,
                    accepted,
                    self._s.ingest_rate_per_s,
                    self._s.ingest_burst,
                    self._s.monthly_events,
                ),
            )
            row = await cur.fetchone()
        assert row is not None
        wait, month_full_at = row
        if wait > 0:
            raise Problem(
                429,
                "rate-limited",
                "tenant ingest rate exceeded; retry later",
                retry_after(min(wait, 3600.0)),
            )
        if month_full_at is not None:
            raise Problem(
                429,
                "monthly-quota-exceeded",
                f"tenant monthly event quota ({month_full_at}) would be exceeded",
                retry_after(_seconds_to_next_month(datetime.now(UTC))),
            )

    async def query(self, tenant: str) -> None:
        """Spend one query token under the tenant's limits, or raise 429 with Retry-After."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "select wait_s, rate, burst from api.admit_query(%s, %s, %s)",
                (tenant, self._s.query_rate_per_s, self._s.query_burst),
            )
            row = await cur.fetchone()
        assert row is not None
        wait, rate, burst = row
        if wait > 0:
            raise Problem(
                429,
                "rate-limited",
                f"tenant query rate exceeded ({rate:g}/s, burst {burst:g}); retry later",
                retry_after(min(wait, 3600.0)),
            )
