"""Callbacks from the alert channels: Slack's Acknowledge button and PagerDuty's V3 webhooks
acknowledge or resolve an alert in the hub (llmhub/alerts/callbacks.py).

Not behind API keys: Slack and PagerDuty cannot send one. Each request is verified by its
signature instead, and a bad or missing signature is a 401 that changes nothing.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from llmhub.alerts import callbacks
from llmhub.api.deps import services
from llmhub.api.problems import Problem

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/alerts/callbacks", tags=["alerts"])


def database_url(request: Request) -> str:
    """The alerting tables' owner connection (the sender's and the CLI's)."""
    return services(request).settings.database_url


DatabaseUrl = Annotated[str, Depends(database_url)]


def _apply(url: str, actions: list[callbacks.Action]) -> list[dict[str, Any]]:
    import psycopg

    with psycopg.connect(url, autocommit=True, application_name="llmhub-alert-callbacks") as conn:
        return callbacks.apply(conn, actions)


async def _handle(request: Request, url: str, provider: str) -> dict[str, Any]:
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        if provider == "slack":
            callbacks.verify_slack(
                callbacks.signing_secret(callbacks.SLACK_SECRET_ENV), headers, body
            )
            actions = callbacks.slack_actions(body)
        else:
            callbacks.verify_pagerduty(
                callbacks.signing_secret(callbacks.PAGERDUTY_SECRET_ENV), headers, body
            )
            actions = callbacks.pagerduty_actions(body)
    except callbacks.BadSignature as exc:
        log.warning("%s callback refused: %s", provider, exc)
        raise Problem(401, "bad-signature", f"{provider} request signature not accepted") from exc
    except (ValueError, KeyError) as exc:
        raise Problem(400, "bad-callback", f"not a {provider} callback payload") from exc
    done = await run_in_threadpool(_apply, url, actions) if actions else []
    log.info("%s callback: %s", provider, done)
    return {"ok": True, "applied": done}


@router.post("/slack", summary="Slack interactivity: the Acknowledge button")
async def slack_callback(request: Request, url: DatabaseUrl) -> dict[str, Any]:
    return await _handle(request, url, "slack")


@router.post("/pagerduty", summary="PagerDuty V3 webhook: incident acknowledged / resolved")
async def pagerduty_callback(request: Request, url: DatabaseUrl) -> dict[str, Any]:
    return await _handle(request, url, "pagerduty")
