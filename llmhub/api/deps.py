"""What every route needs: the process's services, the caller, and a tenant-scoped transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from fastapi import Request
from psycopg.abc import Query
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

from llmhub.api.auth import Authenticator, Principal, check
from llmhub.api.cache import CacheVersions, ResultCache
from llmhub.api.kafka import EventSender
from llmhub.api.quotas import Quotas
from llmhub.config import ApiSettings, Settings
from llmhub.contract.topics import TOPICS
from llmhub.ingest.normalize import Normalizer


@dataclass
class Services:
    """One per API process, built by the app's lifespan."""

    settings: Settings
    api: ApiSettings
    pool: AsyncConnectionPool
    sender: EventSender
    auth: Authenticator
    quotas: Quotas
    normalizers: dict[str, Normalizer]
    versions: CacheVersions
    results: ResultCache
    inflight: int = 0

    @classmethod
    def normalizers_for(cls, settings: Settings) -> dict[str, Normalizer]:
        """The ingester's own validators, one per family (the HTTP layer validates nothing
        itself: what it accepts is exactly what ingestion would store)."""
        return {spec.family: Normalizer(spec, settings) for spec in TOPICS}


def services(request: Request) -> Services:
    return request.app.state.services


def require(scope: str, role: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency: authenticate, check scope and role, remember the tenant for the log."""

    async def dependency(request: Request) -> Principal:
        principal = await services(request).auth.authenticate(request)
        request.state.tenant = principal.tenant_id
        request.state.subject = principal.subject
        check(principal, scope, role)
        return principal

    return dependency


@asynccontextmanager
async def tenant_transaction(
    svc: Services, principal: Principal
) -> AsyncIterator[psycopg.AsyncConnection]:
    """A transaction whose row-level security sees only the caller's tenant, and in which what
    the caller writes is attributed to its credential (``llmhub.subject``: the feedback
    trigger of migration 0014 stamps it into ``noted_by``)."""
    # Pipeline mode: BEGIN, the settings and the route's first statement leave in one network
    # round trip (the first fetch syncs), COMMIT in a second, instead of four.
    async with svc.pool.connection() as conn, conn.pipeline(), conn.transaction():
        await conn.execute(_TENANT_SETTINGS, (principal.tenant_id, principal.subject))
        yield conn


_TENANT_SETTINGS = (
    "select set_config('llmhub.tenant_id', %s, true), set_config('llmhub.subject', %s, true)"
)


async def tenant_read(
    svc: Services, principal: Principal, statement: Query, params: dict[str, Any]
) -> tuple[list[tuple[Any, ...]], list[str]]:
    """One read-only statement under the caller's row-level security, in ONE network round
    trip: BEGIN, the settings, the statement and COMMIT leave together and are answered
    together (``tenant_transaction`` takes two: its COMMIT waits for the fetch). A round trip
    is two process wake-ups, and on a busy host each waits for a core: what a cache miss's
    tail is made of. Rows come in PostgreSQL's binary format; returns (rows, column names).
    """
    async with svc.pool.connection() as conn:
        try:
            async with conn.pipeline() as pipeline:
                await conn.execute("begin read only")
                await conn.execute(_TENANT_SETTINGS, (principal.tenant_id, principal.subject))
                cur = conn.cursor(binary=True)
                await cur.execute(statement, params)
                await conn.execute("commit")
                await pipeline.sync()
                rows = await cur.fetchall()
        except BaseException:
            # A failed statement leaves the rest of the pipeline (its COMMIT) unexecuted and
            # the transaction open: end it before the connection goes back to the pool.
            if conn.info.transaction_status != TransactionStatus.IDLE and not conn.closed:
                await conn.execute("rollback")
            raise
        return rows, [c.name for c in cur.description or ()]


def utc_iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
