"""Alert fan-out: 10,000 incidents to 4 channels (Slack, Teams, PagerDuty, webhook) against the
local recording receiver, through the real policy, outbox and sender.

1. **burst**: all incidents are evaluated into the outbox first (``--incidents`` x 4
   notifications), then ``--workers`` sender processes of ``--threads`` threads each drain it
   (``select ... for update skip locked``, one commit per delivery): notifications/s =
   notifications / drain time, and the incidents' p50/p95 latency (their queueing).
2. **paced**: the incidents arrive at ``--rate`` per second (evaluated in batches every 100 ms)
   while the senders run: p50/p95/max incident-to-delivery latency, from the incident's
   evaluation into the outbox to its arrival at the receiver (no group wait: routes have
   ``group_wait`` 0, so this is the pipeline's own latency; the target is p95 < 5 s).

Runs on its own database (``llmhub_bench_alerts``, dropped first and afterwards). The receiver
runs in this process (threads), the senders in their own processes; everything shares the
machine's CPU with the database. The last line printed is one JSON object; it is also written to
benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from rich.console import Console
from rich.progress import Progress

from llmhub.alerts.model import Alertable
from llmhub.alerts.receiver import RecordingHTTPServer
from llmhub.alerts.sender import Sender
from llmhub.alerts.store import evaluate
from llmhub.config import load_settings, with_database
from llmhub.db import migrate

console = Console(stderr=True)
RESULTS = Path(__file__).parent / "results"
DATABASE = "llmhub_bench_alerts"
CHANNELS = ("slack", "teams", "pagerduty", "webhook")


def _worker(database_url: str, concurrency: int, stop: mp.Event) -> None:  # type: ignore[valid-type]
    sender = Sender(database_url, concurrency=concurrency)
    try:
        while True:
            sender.drain()
            if stop.is_set() and sender.next_due_in() is None:
                return
            time.sleep(0.01)
    finally:
        sender.close()


def _routes(conn: psycopg.Connection, http: RecordingHTTPServer) -> None:
    os.environ["BENCH_SLACK"] = http.url("/slack/bench")
    os.environ["BENCH_TEAMS"] = http.url("/teams/bench")
    os.environ["BENCH_PD"] = "bench-routing-key"
    os.environ["BENCH_HMAC"] = "bench-hmac"
    config = {
        "slack": ({}, "env:BENCH_SLACK"),
        "teams": ({}, "env:BENCH_TEAMS"),
        "pagerduty": ({"events_url": http.url("/pagerduty/v2/enqueue")}, "env:BENCH_PD"),
        "webhook": ({"endpoint": http.url("/webhook")}, "env:BENCH_HMAC"),
    }
    for channel in CHANNELS:
        cfg, ref = config[channel]
        # One message per incident (group_by key): the benchmark counts deliveries, not batches.
        conn.execute(
            "insert into alerting.routes (tenant_id, channel, channel_config, secret_ref, "
            "group_by, group_wait_s) values ('*', %s, %s, %s, '{key}', 0)",
            (channel, Jsonb(cfg), ref),
        )


def incidents(start: int, count: int, tenants: int = 50) -> list[Alertable]:
    now = datetime.now(UTC)
    return [
        Alertable(
            key=f"incident-{i:06d}",
            tenant_id=f"tenant-{i % tenants:02d}",
            source="incident",
            severity=("warning", "error", "critical")[i % 3],
            status="firing",
            title=f"Error rate up on app-{i % 17}",
            summary="error rate 9.5% against 0.8% expected over the last 15 minutes",
            occurred_at=now,
            application=f"app-{i % 17}",
            details={"incident_id": i},
        )
        for i in range(start, start + count)
    ]


@dataclass(frozen=True)
class Senders:
    processes: int
    threads: int  # per process (Sender concurrency)


def _start_workers(url: str, senders: Senders) -> tuple[list[mp.Process], mp.Event]:  # type: ignore[valid-type]
    stop = mp.Event()
    procs = [
        mp.Process(target=_worker, args=(url, senders.threads, stop), daemon=True)
        for _ in range(senders.processes)
    ]
    for p in procs:
        p.start()
    return procs, stop


def _wait_delivered(http: RecordingHTTPServer, total: int, progress: Progress, task) -> None:
    while True:
        done = http.accepted_count
        progress.update(task, completed=done)
        if done >= total:
            return
        time.sleep(0.05)


def _latencies(http: RecordingHTTPServer, created: dict[str, float]) -> list[float]:
    # Each request names its notification key, which starts with the incident's alert key.
    return sorted(
        r.received_at - created[key.split("|")[0]] for r in http.accepted() for key in r.keys
    )


def burst(
    url: str, http: RecordingHTTPServer, n: int, senders: Senders, progress: Progress
) -> dict:
    with psycopg.connect(url, autocommit=True) as conn:
        t0 = time.perf_counter()
        created: dict[str, float] = {}
        for start in range(0, n, 1000):
            alerts = incidents(start, min(1000, n - start))
            evaluate(conn, alerts=alerts)
            stamp = time.time()
            created.update((a.key, stamp) for a in alerts)
        enqueue_s = time.perf_counter() - t0
    total = n * len(CHANNELS)
    task = progress.add_task("burst: sending", total=total)
    t1 = time.perf_counter()
    procs, stop = _start_workers(url, senders)
    _wait_delivered(http, total, progress, task)
    drain_s = time.perf_counter() - t1
    stop.set()
    for p in procs:
        p.join()
    latencies = _latencies(http, created)
    return {
        "incidents": n,
        "notifications": total,
        # From each incident's commit into the outbox: a burst's latency is its queueing.
        "latency_p50_s": round(statistics.median(latencies), 3),
        "latency_p95_s": round(latencies[int(0.95 * (len(latencies) - 1))], 3),
        "enqueue_s": round(enqueue_s, 2),
        "enqueue_incidents_per_s": round(n / enqueue_s, 1),
        "drain_s": round(drain_s, 2),
        "notifications_per_s": round(total / drain_s, 1),
    }


def paced(
    url: str, http: RecordingHTTPServer, n: int, rate: float, senders: Senders, progress: Progress
) -> dict:
    http.reset()
    total = n * len(CHANNELS)
    task = progress.add_task(f"paced at {rate:g} incidents/s", total=total)
    procs, stop = _start_workers(url, senders)
    created: dict[str, float] = {}
    batch = max(1, round(rate / 10))
    t0 = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        for i, start in enumerate(range(10**6, 10**6 + n, batch)):
            due = t0 + i * batch / rate
            time.sleep(max(0.0, due - time.perf_counter()))
            alerts = incidents(start, min(batch, 10**6 + n - start))
            evaluate(conn, alerts=alerts)
            stamp = time.time()  # committed: from here on a sender may deliver it
            created.update((a.key, stamp) for a in alerts)
            progress.update(task, completed=http.accepted_count)
    _wait_delivered(http, total, progress, task)
    elapsed = time.perf_counter() - t0
    stop.set()
    for p in procs:
        p.join()
    latencies = _latencies(http, created)
    return {
        "incidents": n,
        "notifications": total,
        "rate_incidents_per_s": rate,
        "elapsed_s": round(elapsed, 2),
        "notifications_per_s": round(total / elapsed, 1),
        "latency_p50_s": round(statistics.median(latencies), 3),
        "latency_p95_s": round(latencies[int(0.95 * (len(latencies) - 1))], 3),
        "latency_max_s": round(latencies[-1], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--incidents", type=int, default=10_000, help="incidents of the burst phase (0: skip it)"
    )
    parser.add_argument("--workers", type=int, default=2, help="sender processes")
    parser.add_argument("--threads", type=int, default=8, help="sender threads per process")
    parser.add_argument("--rate", type=float, default=25.0, help="paced incidents per second")
    parser.add_argument(
        "--paced-incidents", type=int, default=2_000, help="incidents of the paced phase"
    )
    args = parser.parse_args()

    senders = Senders(args.workers, args.threads)
    settings = load_settings()
    admin = with_database(settings.database_url, "postgres")
    url = with_database(settings.database_url, DATABASE)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(DATABASE))
        )
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(DATABASE)))
    try:
        migrate(replace(settings, database_url=url))
        with RecordingHTTPServer() as http, Progress(console=console) as progress:
            with psycopg.connect(url, autocommit=True) as conn:
                _routes(conn, http)
            burst_result = (
                burst(url, http, args.incidents, senders, progress) if args.incidents else None
            )
            paced_result = paced(url, http, args.paced_incidents, args.rate, senders, progress)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(DATABASE))
            )
    result = {
        "benchmark": "alert_fanout",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "channels": list(CHANNELS),
        "sender_processes": args.workers,
        "sender_threads_per_process": args.threads,
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "burst": burst_result,
        "paced": paced_result,
        "target_p95_s": 5.0,
    }
    RESULTS.mkdir(exist_ok=True)
    name = "alert_fanout.json" if burst_result else "alert_fanout_paced.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
