"""The FastAPI application: ``create_app`` builds it, ``factory`` is what uvicorn imports.

``llmhub serve`` runs it (llmhub/cli/serve.py). OpenAPI at ``/docs`` and ``/openapi.json``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response
from psycopg_pool import AsyncConnectionPool

from llmhub.api import problems, routes_admin, routes_alert_callbacks, routes_ingest, routes_query
from llmhub.api.auth import Authenticator, Principal
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
            kwargs={"application_name": "llmhub-api", "autocommit": True},
            open=False,
        )
        await pool.open(wait=True, timeout=30)
        sender = EventSender(settings.kafka_bootstrap)
        app.state.services = Services(
            settings=settings,
            api=api,
            pool=pool,
            sender=sender,
            auth=Authenticator(api, pool),
            quotas=Quotas(api, pool),
            normalizers=Services.normalizers_for(settings),
        )
        try:
            yield
        finally:
            sender.close()
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

    @app.middleware("http")
    async def access_log(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            # Tenant, route template, status, latency: never headers, keys or bodies.
            log.info(
                "tenant=%s subject=%s route=%s %s status=%d latency_ms=%.1f accepted=%s",
                getattr(request.state, "tenant", "-"),
                getattr(request.state, "subject", "-"),
                request.method,
                getattr(route, "path", request.url.path),
                status,
                (time.perf_counter() - started) * 1000,
                getattr(request.state, "accepted", "-"),
            )

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


def factory() -> FastAPI:
    """The app from the environment (``uvicorn --factory llmhub.api.app:factory``)."""
    settings = load_settings()
    return create_app(settings, load_api_settings(settings))
