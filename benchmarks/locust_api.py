"""Locust users of the HTTP API benchmark (driven by benchmarks/api_load.py, headless).

``LLMHUB_BENCH_MODE=ingest``: each user posts one pre-built OTLP/protobuf request of GenAI spans
(the file ``LLMHUB_BENCH_PAYLOAD``) in a loop. ``query``: each user is one dashboard of a random
tenant, asking ``GET /api/v1/metrics`` questions with ``LLMHUB_BENCH_THINK_S`` seconds between
them (0: back to back).
"""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from locust import FastHttpUser, constant, task

MODE = os.environ.get("LLMHUB_BENCH_MODE", "query")
KEYS = [k for k in os.environ.get("LLMHUB_BENCH_KEYS", "").split(",") if k]
INGEST_KEY = os.environ.get("LLMHUB_BENCH_INGEST_KEY", "")
PAYLOAD = Path(os.environ["LLMHUB_BENCH_PAYLOAD"]).read_bytes() if MODE == "ingest" else b""
THINK_S = float(os.environ.get("LLMHUB_BENCH_THINK_S", "0"))
END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def _queries() -> list[tuple[str, dict[str, str]]]:
    day = (END - timedelta(days=1)).isoformat()
    week = (END - timedelta(days=7)).isoformat()
    month = (END - timedelta(days=30)).isoformat()
    return [
        # A dashboard's last-24-hours panel per application and model (exact percentiles).
        ("24h by app+model", {"start": day, "group_by": "application,version,model,provider"}),
        (
            "24h by model",
            {"start": day, "group_by": "model", "metrics": "requests,error_rate,cost_usd"},
        ),
        ("7d daily by app", {"start": week, "granularity": "day", "group_by": "application"}),
        ("30d daily tenant", {"start": month, "granularity": "day", "group_by": "tenant"}),
        ("24h one app", {"start": day, "group_by": "model", "application": "app-3"}),
    ]


QUERIES = _queries()


class IngestUser(FastHttpUser):
    wait_time = constant(0)

    @task
    def export(self) -> None:
        if MODE != "ingest":
            return
        self.client.post(
            "/v1/traces",
            data=PAYLOAD,
            headers={
                "Content-Type": "application/x-protobuf",
                "Authorization": f"Bearer {INGEST_KEY}",
            },
            name="/v1/traces",
        )


class DashboardUser(FastHttpUser):
    wait_time = constant(THINK_S)

    def on_start(self) -> None:
        self.key = random.choice(KEYS) if KEYS else ""

    @task
    def metrics(self) -> None:
        if MODE != "query":
            return
        name, params = random.choice(QUERIES)
        self.client.get(
            "/api/v1/metrics",
            params=params,
            headers={"Authorization": f"Bearer {self.key}"},
            name=name,
        )
