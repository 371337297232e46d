"""Per-tenant quotas in PostgreSQL, shared by every API process.

Token buckets (ingest events/s, queries/s) and the monthly event count live in ``api.*`` tables
(migration 0010) and change in one function call each, under the bucket's row lock; query tokens
are leased a few at a time (``Quotas.query``) so most queries make no round trip. PostgreSQL,
not Redis: it is already the one service every API process reaches, survives restarts, and one
round trip (~0.3 ms here) per request is far below the request's own cost; Redis would add a
service to run and secure for no measurable gain at these rates.

A tenant's own limits (``api.tenant_quotas``, set with ``llmhub quotas``) override the configured
defaults (``LLMHUB_API_*``); the override is read inside the same call, so it costs no round trip.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from llmhub.api.problems import Problem, retry_after
from llmhub.config import ApiSettings

# Seconds a process may spend query tokens it leased from the shared bucket. Not what bounds
# the overshoot (a lease holds at most a tenth of a second of the tenant's rate): it only
# stops a process from spending tokens taken under limits that have since changed.
LEASE_S = 10.0
log = logging.getLogger(__name__)


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
        # tenant -> (query tokens this process still holds, when they were taken)
        self._leases: dict[str, tuple[int, float]] = {}
        # Leases being taken ahead of need, off the request path (references kept).
        self._refills: dict[str, asyncio.Task[None]] = {}

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
        """Spend one query token under the tenant's limits, or raise 429 with Retry-After.

        Tokens come from the shared bucket in leases (``api.admit_query_lease``, migration
        0015): one round trip takes up to ``query_lease`` tokens (at most a tenth of a second
        of the tenant's rate, a quarter of its burst) and this process spends them for up to
        ``LEASE_S`` seconds before returning to the bucket. Every token spent was taken from
        the shared bucket, so the processes together never admit more than it grants; in any
        window of t seconds they admit at most ``burst + rate x t`` plus the tokens the
        processes held when it began (at most ``processes x 1.25 leases``: the next lease is
        taken when a quarter of one is left; each lease at most a tenth of a second of the
        tenant's rate), and a leased token unused within ``LEASE_S`` is forfeited rather than
        spent late.
        """
        now = time.monotonic()
        lease = self._leases.get(tenant)
        if lease is not None and lease[0] > 0 and now - lease[1] < LEASE_S:
            self._leases[tenant] = (lease[0] - 1, lease[1])
            if lease[0] - 1 <= self._s.query_lease // 4 and tenant not in self._refills:
                # Running low: the next lease is taken now, in the background, so that no
                # request of a steadily busy tenant waits for the round trip (a sixteenth of
                # all cached answers did, each a database wake-up on a loaded host).
                task = asyncio.get_running_loop().create_task(self._refill(tenant))
                self._refills[tenant] = task
                task.add_done_callback(lambda _: self._refills.pop(tenant, None))
            return
        granted, wait, rate, burst = await self._take_lease(tenant)
        if granted < 1:
            self._leases.pop(tenant, None)
            raise Problem(
                429,
                "rate-limited",
                f"tenant query rate exceeded ({rate:g}/s, burst {burst:g}); retry later",
                retry_after(min(wait, 3600.0)),
            )
        self._leases[tenant] = (granted - 1, now)
        self._forget_lapsed(now)

    async def _take_lease(self, tenant: str) -> tuple[int, float, float, float]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "select granted, wait_s, rate, burst from api.admit_query_lease(%s, %s, %s, %s)",
                (tenant, self._s.query_lease, self._s.query_rate_per_s, self._s.query_burst),
            )
            row = await cur.fetchone()
        assert row is not None
        return row

    async def _refill(self, tenant: str) -> None:
        """Take the tenant's next lease ahead of need and add it to what is left. A refusal
        (bucket empty) changes nothing: the request that finds no token left asks itself and
        gets the 429. Tokens held stay at most 1.25 leases per process."""
        try:
            granted = (await self._take_lease(tenant))[0]
        except Exception as exc:  # the request path asks again when its tokens run out
            log.warning("query lease refill failed: %s", type(exc).__name__)
            return
        if granted < 1:
            return
        now = time.monotonic()
        lease = self._leases.get(tenant)
        left = lease[0] if lease is not None and now - lease[1] < LEASE_S else 0
        self._leases[tenant] = (left + granted, now)

    def _forget_lapsed(self, now: float) -> None:
        if len(self._leases) > 100_000:  # tenants seen long ago: their leases have lapsed
            self._leases = {t: v for t, v in self._leases.items() if now - v[1] < LEASE_S}


# --- per-tenant overrides (api.tenant_quotas, migration 0014) --------------------------------

LIMITS = ("ingest_rate_per_s", "ingest_burst", "monthly_events", "query_rate_per_s", "query_burst")


@dataclass(frozen=True, slots=True)
class TenantLimits:
    """A tenant's effective limits and which of them are its own (the rest are defaults)."""

    tenant_id: str
    ingest_rate_per_s: float
    ingest_burst: float
    monthly_events: int
    query_rate_per_s: float
    query_burst: float
    overridden: tuple[str, ...]


def set_override(conn: psycopg.Connection, tenant: str, limits: dict[str, float | None]) -> None:
    """Set some of ``tenant``'s own limits (keys from ``LIMITS``); those not given keep their
    current override, a ``None`` value returns that limit to the default.

    Raises:
        ValueError: an unknown limit name or a negative value.
    """
    unknown = set(limits) - set(LIMITS)
    if unknown:
        raise ValueError(f"unknown limits {sorted(unknown)}; known: {LIMITS}")
    if any(v is not None and v < 0 for v in limits.values()):
        raise ValueError("limits must not be negative")
    columns = list(limits)
    conn.execute(
        sql.SQL(
            "insert into api.tenant_quotas (tenant_id, {cols}) values (%s, {vals}) "
            "on conflict (tenant_id) do update set {sets}, updated_at = now()"
        ).format(
            cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
            vals=sql.SQL(", ").join(sql.Placeholder() * len(columns)),
            sets=sql.SQL(", ").join(
                sql.SQL("{c} = excluded.{c}").format(c=sql.Identifier(c)) for c in columns
            ),
        ),
        (tenant, *[limits[c] for c in columns]),
    )


def clear_override(conn: psycopg.Connection, tenant: str) -> bool:
    """Return ``tenant`` to the default limits; False when it had no override."""
    cur = conn.execute("delete from api.tenant_quotas where tenant_id = %s", (tenant,))
    return cur.rowcount > 0


def tenant_limits(
    conn: psycopg.Connection, settings: ApiSettings, tenant: str | None = None
) -> list[TenantLimits]:
    """The effective limits of ``tenant`` (defaults when it has no override), or of every
    tenant with an override when ``tenant`` is None."""
    rows = conn.execute(
        sql.SQL(
            "select tenant_id, {cols} from api.tenant_quotas "
            "where %(t)s::text is null or tenant_id = %(t)s order by tenant_id"
        ).format(cols=sql.SQL(", ").join(map(sql.Identifier, LIMITS))),
        {"t": tenant},
    ).fetchall()
    if tenant is not None and not rows:
        rows = [(tenant, *([None] * len(LIMITS)))]
    out = []
    for row in rows:
        own = dict(zip(LIMITS, row[1:], strict=True))
        values = {k: getattr(settings, k) if v is None else v for k, v in own.items()}
        overridden = tuple(k for k, v in own.items() if v is not None)
        out.append(TenantLimits(row[0], **values, overridden=overridden))
    return out
