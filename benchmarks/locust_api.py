"""Locust users of the HTTP API benchmark (driven by benchmarks/api_load.py, headless).

``LLMHUB_BENCH_MODE=ingest``: each user posts one pre-built OTLP/protobuf request of GenAI spans
(the file ``LLMHUB_BENCH_PAYLOAD``) in a loop.

``query``: each user is a person watching its tenant's dashboard (``LLMHUB_BENCH_KEYS``: one
read key per tenant; user i watches tenant i, so 200 users are two per tenant of 100). A
tenant's dashboard is six of the ``PANELS`` below, drawn for that tenant with its own
application / model filters: 24 h and 6 h hourly by series, model, application or provider,
7 and 30 days daily, one application's or one model's week, each with the metrics a panel
shows (all of them for the one-application panels), each relative to now (``start`` = now -
range at the moment of the request, ``end`` omitted, as a dashboard asks). Nine requests in
ten are a panel of the user's dashboard; one in ten is an ad-hoc question (a random window of
6 h to 30 days ending a random number of hours ago, random grouping and filter), which no
cache has seen. Between two requests a user waits ``LLMHUB_BENCH_THINK_S`` seconds: ``lo,hi``
for a uniform wait (locust ``between``), one number for a constant one (0: closed loop).

Every response's ``Cache-Status`` (RFC 9211) is counted and its latency kept by status (a hit's
tail and a miss's are different questions); counts and latencies are written to
``LLMHUB_BENCH_CACHE_STATS``.<pid> by each locust process when it stops (``--processes N``
forks several; api_load.py merges the files).
"""

from __future__ import annotations

import itertools
import json
import os
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from locust import FastHttpUser, between, constant, events, task

MODE = os.environ.get("LLMHUB_BENCH_MODE", "query")
KEYS = [k for k in os.environ.get("LLMHUB_BENCH_KEYS", "").split(",") if k]
INGEST_KEY = os.environ.get("LLMHUB_BENCH_INGEST_KEY", "")
PAYLOAD = Path(os.environ["LLMHUB_BENCH_PAYLOAD"]).read_bytes() if MODE == "ingest" else b""
THINK = [float(x) for x in os.environ.get("LLMHUB_BENCH_THINK_S", "0").split(",")]
APPS = int(os.environ.get("LLMHUB_BENCH_APPS", "10"))
MODELS = int(os.environ.get("LLMHUB_BENCH_MODELS", "5"))
STATS_PATH = os.environ.get("LLMHUB_BENCH_CACHE_STATS")
CACHE: dict[str, int] = {}
LATENCIES: dict[str, list[float]] = {}  # ms by Cache-Status outcome
_USER_NUMBERS = itertools.count()

SERIES = "application,version,model,provider"
# (panel name, hours back, parameters); {app} / {model} are the tenant's own choices.
PANELS: list[tuple[str, int, dict[str, str]]] = [
    (
        "24h by series",
        24,
        {"group_by": SERIES, "metrics": "requests,error_rate,latency_p95_ms,cost_usd"},
    ),
    ("24h by model", 24, {"group_by": "model", "metrics": "requests,error_rate,cost_usd"}),
    (
        "6h by application",
        6,
        {"group_by": "application", "metrics": "requests,error_rate,rate_limited_rate"},
    ),
    ("24h by provider", 24, {"group_by": "provider", "metrics": "requests,rate_limited_rate"}),
    ("7d daily by application", 24 * 7, {"granularity": "day", "group_by": "application"}),
    ("30d daily tenant", 24 * 30, {"granularity": "day", "group_by": "tenant"}),
    (
        "30d daily cost by model",
        24 * 30,
        {"granularity": "day", "group_by": "model", "metrics": "cost_usd,input_tokens"},
    ),
    ("24h one application", 24, {"group_by": "model", "application": "{app}"}),
    (
        "7d hourly one model",
        24 * 7,
        {"group_by": "application", "model": "{model}", "metrics": "requests,error_rate"},
    ),
    ("6h one application by series", 6, {"group_by": SERIES, "application": "{app}"}),
    ("24h latency by series", 24, {"group_by": SERIES, "metrics": "latency_p50_ms,latency_p99_ms"}),
]


def dashboard(tenant: int) -> list[tuple[str, int, dict[str, str]]]:
    """The tenant's dashboard: six panels and its own filters, the same for all its users."""
    rng = random.Random(tenant)
    app, model = f"app-{rng.randint(1, APPS)}", f"model-{rng.randint(1, MODELS)}"
    return [
        (name, hours, {k: v.format(app=app, model=model) for k, v in params.items()})
        for name, hours, params in rng.sample(PANELS, 6)
    ]


def ad_hoc(rng: random.Random) -> dict[str, str]:
    """An analyst's one-off question: a window no dashboard asks for."""
    hours = rng.choice((6, 12, 24, 72, 24 * 7, 24 * 14, 24 * 30))
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    end = now - timedelta(hours=rng.randint(0, 24 * 7))
    params = {
        "start": (end - timedelta(hours=hours)).isoformat(),
        "end": end.isoformat(),
        "granularity": "hour" if hours <= 72 else "day",
        "group_by": rng.choice(("model", "application", "provider", "tenant", SERIES)),
    }
    if rng.random() < 0.5:
        params["application"] = f"app-{rng.randint(1, APPS)}"
    return params


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
    wait_time = between(THINK[0], THINK[-1]) if len(THINK) > 1 else constant(THINK[0])

    def on_start(self) -> None:
        # User i watches tenant i (mod the tenants): a warm-up run and the measured run that
        # follows it (two locust processes) are the same people at the same dashboards.
        tenant = next(_USER_NUMBERS) % len(KEYS) if KEYS else 0
        self.key = KEYS[tenant] if KEYS else ""
        self.panels = dashboard(tenant)
        self.rng = random.Random()

    def _get(self, name: str, params: dict[str, str]) -> None:
        with self.client.get(
            "/api/v1/metrics",
            params=params,
            headers={"Authorization": f"Bearer {self.key}"},
            name=name,
            catch_response=True,
        ) as response:
            status = (response.headers or {}).get("Cache-Status", "none")
            outcome = status.partition(";")[2].strip() or "none"
            CACHE[outcome] = CACHE.get(outcome, 0) + 1
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")

    @task(9)
    def panel(self) -> None:
        if MODE != "query":
            return
        name, hours, params = self.rng.choice(self.panels)
        start = datetime.now(UTC) - timedelta(hours=hours)
        self._get(name, {"start": start.isoformat(), **params})

    @task(1)
    def explore(self) -> None:
        if MODE != "query":
            return
        self._get("ad hoc", ad_hoc(self.rng))


@events.request.add_listener
def _latency_by_status(response_time: float, response: Any = None, **_: Any) -> None:
    if MODE != "query" or response is None:
        return
    status = (getattr(response, "headers", None) or {}).get("Cache-Status", "none")
    LATENCIES.setdefault(status.partition(";")[2].strip() or "none", []).append(response_time)


# Headless ``--reset-stats`` resets locust's stats on spawning_complete; ``reset_stats`` fires
# only from the web UI (locust 2.47), so the counts kept the arrival ramp until this listener.
@events.spawning_complete.add_listener
def _reset_cache_stats(**_: Any) -> None:
    CACHE.clear()
    LATENCIES.clear()


@events.quitting.add_listener
def _write_cache_stats(**_: Any) -> None:
    if STATS_PATH and CACHE:
        Path(f"{STATS_PATH}.{os.getpid()}").write_text(
            json.dumps({"counts": CACHE, "latencies_ms": LATENCIES})
        )
