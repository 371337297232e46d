"""RFC 9457 problem details: every error the API returns has this one body shape."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://llmhub.dev/problems/"


class Problem(Exception):
    """An error answered as ``application/problem+json``.

    Args:
        status: HTTP status.
        code: short slug; the problem ``type`` is ``TYPE_BASE + code``.
        detail: what went wrong for this request (never a secret).
        headers: extra response headers (Retry-After, WWW-Authenticate).
        extra: extension members added to the body.
    """

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


def problem_body(status: int, code: str, detail: str, instance: str, **extra: Any) -> dict:
    return {
        "type": TYPE_BASE + code,
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": instance,
        **extra,
    }


def problem_response(
    request: Request,
    status: int,
    code: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    return JSONResponse(
        problem_body(status, code, detail, request.url.path, **extra),
        status_code=status,
        headers=headers,
        media_type=PROBLEM_JSON,
    )


def retry_after(seconds: float) -> dict[str, str]:
    """A Retry-After header (whole seconds, at least 1)."""
    return {"Retry-After": str(max(1, int(seconds + 0.999)))}


def install(app: FastAPI) -> None:
    """Answer every error (ours, routing, validation, unexpected) as a problem."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            request, exc.status, exc.code, exc.detail, exc.headers or None, **exc.extra
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "-")
        return problem_response(
            request, exc.status_code, code, str(exc.detail), getattr(exc, "headers", None)
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(err.get("loc", ())), "msg": err.get("msg", "")}
            for err in exc.errors()[:20]
        ]
        return problem_response(
            request, 422, "invalid-request", "the request parameters are invalid", errors=errors
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return problem_response(request, 500, "internal-error", "internal error")
