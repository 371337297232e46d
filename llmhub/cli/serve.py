"""``llmhub serve``: the HTTP API on uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

serve_app = typer.Typer()


@serve_app.command("serve")
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (LLMHUB_API_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (LLMHUB_API_PORT, 8080)")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (LLMHUB_API_WORKERS, 1)")
    ] = None,
) -> None:
    """Serve the HTTP API (OTLP + events in, metrics/anomalies/forecasts/budgets out)."""
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from llmhub.config import load_api_settings

    # Worker processes start afresh: the request log needs its handler in uvicorn's own config.
    log_config = {
        **LOGGING_CONFIG,
        "formatters": {
            **LOGGING_CONFIG["formatters"],
            "request": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        },
        "handlers": {
            **LOGGING_CONFIG["handlers"],
            "request": {
                "class": "logging.StreamHandler",
                "formatter": "request",
                "stream": "ext://sys.stderr",
            },
        },
        "loggers": {
            **LOGGING_CONFIG["loggers"],
            "llmhub": {"handlers": ["request"], "level": "INFO", "propagate": False},
        },
    }
    api = load_api_settings()
    uvicorn.run(
        "llmhub.api.app:factory",
        factory=True,
        host=host or api.host,
        port=port or api.port,
        workers=workers or api.workers,
        log_level="info",
        log_config=log_config,
        access_log=False,
        proxy_headers=True,
        # Worker health pings: the 5 s default kills workers still importing on a loaded host.
        timeout_worker_healthcheck=60,
    )
