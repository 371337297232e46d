"""The FastAPI application: ``create_app`` builds it, ``factory`` is what uvicorn imports.

``llmhub serve`` runs it (llmhub/cli/serve.py). OpenAPI at ``/docs`` and ``/openapi.json``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import psycopg
from fastapi import Depends, FastAPI
from psycopg_pool import AsyncConnectionPool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmhub.api import problems, routes_admin, routes_alert_callbacks, routes_ingest, routes_query
from llmhub.api.auth import Authenticator, Principal
from llmhub.api.cache import VERSIONS_SQL, CacheVersions, ResultCache, poll_versions
from llmhub.api.deps import Services, require
from llmhub.api.kafka import EventSender
from llmhub.api.quotas import Quotas
from llmhub.config import ApiSettings, Settings, load_api_settings, load_settings

log = logging.getLogger("llmhub.api.access")


def create_app(settings: Settings, api: ApiSettings) -> FastAPI:
    """Build the app; the pool and the Kafka producer open in its lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = AsyncConnectionPool(
            api.database_url,
            min_size=2,
            max_size=api.pool_size,
            # UTC: timestamps in answers read +00:00 whatever the server's own time zone.
            kwargs={
                "application_name": "llmhub-api",
                "autocommit": True,
                "options": "-c TimeZone=UTC",
            },
            open=False,
        )
        await pool.open(wait=True, timeout=30)
        sender = EventSender(settings.kafka_bootstrap)
        versions = CacheVersions(stale_after=max(5.0, 5 * api.cache_poll_s))
        results = ResultCache(api.cache_mb * 1024 * 1024)
        versions.listeners.append(lambda changed: results.clear())

        # Its own connection: under load the pool's are all taken by requests, and a poll
        # queued behind them would let the versions go stale (and the cache be bypassed).
        poll_conn: list[psycopg.AsyncConnection] = []

        async def fetch_versions() -> list[tuple[str, int]]:
            if not poll_conn or poll_conn[0].closed:
                poll_conn[:] = [
                    await psycopg.AsyncConnection.connect(
                        api.database_url, autocommit=True, application_name="llmhub-api-poll"
                    )
                ]
            try:
                cur = await poll_conn[0].execute(VERSIONS_SQL)
                return await cur.fetchall()
            except psycopg.Error:
                await poll_conn[0].close()
                raise

        versions.update(await fetch_versions())
        poller = asyncio.create_task(poll_versions(versions, fetch_versions, api.cache_poll_s))
        app.state.services = Services(
            settings=settings,
            api=api,
            pool=pool,
            sender=sender,
            auth=Authenticator(api, pool, versions),
            quotas=Quotas(api, pool),
            normalizers=Services.normalizers_for(settings),
            versions=versions,
            results=results,
        )
        try:
            yield
        finally:
            poller.cancel()
            sender.close()
            for conn in poll_conn:
                await conn.close()
            await pool.close()

    app = FastAPI(
        title="LLM Analytics Hub API",
        version="1.0.0",
        description="OTLP and contract events in; request metrics, anomalies, forecasts and "
        "budgets out. Authenticate with `Authorization: Bearer <API key or OIDC token>`. "
        "Errors are RFC 9457 problem details.",
        lifespan=lifespan,
    )
    problems.install(app)

    # A plain ASGI middleware: Starlette's @app.middleware("http") wraps every response in a
    # stream and a task, a measurable share of a cached answer's cost.
    # Cached answers of /api/v1/metrics skip the router (routes_query.MetricsHits); added
    # first, so the access log (added last: outermost) still records them.
    app.add_middleware(routes_query.MetricsHits)
    app.add_middleware(AccessLog)

    @app.get("/healthz", tags=["meta"], summary="Liveness (no authentication)")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/v1/whoami", tags=["meta"], summary="The caller's tenant, role and scopes")
    async def whoami(
        principal: Annotated[Principal, Depends(require("read", "viewer"))],
    ) -> dict[str, Any]:
        return {
            "tenant_id": principal.tenant_id,
            "role": principal.role,
            "scopes": sorted(principal.scopes),
        }

    app.include_router(routes_ingest.router)
    app.include_router(routes_query.router)
    app.include_router(routes_admin.router)
    app.include_router(routes_alert_callbacks.router)
    return app


class AccessLog:
    """One log line per request: tenant, route template, status, latency (never headers, keys
    or bodies)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            state = scope.get("state") or {}
            route = scope.get("route")
            log.info(
                "tenant=%s subject=%s route=%s %s status=%d latency_ms=%.1f accepted=%s",
                state.get("tenant", "-"),
                state.get("subject", "-"),
                scope["method"],
                getattr(route, "path", scope["path"]),
                status,
                (time.perf_counter() - started) * 1000,
                state.get("accepted", "-"),
            )


def factory() -> FastAPI:
    """The app from the environment (``uvicorn --factory llmhub.api.app:factory``)."""
    settings = load_settings()
    return create_app(settings, load_api_settings(settings))
