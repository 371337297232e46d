"""Analyst query latency on the marts, and how long dbt takes to build them.

1. Loads 30 days of synthetic traffic (all five families; at least ``--events`` request events)
   straight into the raw hypertables through llmhub's normaliser and raw writer (the ingestion
   code path without Kafka: COPY per 50,000-row batch). The newest hour is held back.
2. Times ``dbt build`` of the whole project on it (a first build: every model full, every test).
3. Loads the held-back hour and times ``dbt build`` of the incremental request marts (models and
   their tests): the hourly refresh.
4. Runs a fixed set of analyst queries ``--repeat`` times each as role ``analyst`` (row-level
   security on, all tenants) and one as a tenant-scoped role, and reports p50/p95/p99.

Runs in its own database (``llmhub_bench_query``, recreated, dropped at the end unless
``--keep``). The last line printed is one JSON object; it is also written to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import sql
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from llmhub.config import Settings, load_settings, with_database
from llmhub.contract.topics import BY_TOPIC, RAW_TABLES
from llmhub.db import migrate
from llmhub.ingest.normalize import Normalizer, Rejection
from llmhub.ingest.writer import Batch, DeadLetter, RawWriter
from llmhub.ingest.writer import Message as Source
from llmhub.producers.sink import Message
from llmhub.producers.synthetic import generate

console = Console(stderr=True)
DATABASE = "llmhub_bench_query"
RESULTS = Path(__file__).parent / "results"
DBT_PROJECT = Path(__file__).resolve().parents[1] / "dbt_project"
DBT = Path(sys.executable).with_name("dbt")
INCREMENTAL_MODELS = ("fct_llm_requests_hourly", "fct_llm_requests_daily")
TELEMETRY_TOPIC = "llm.telemetry"
BATCH_ROWS = 50_000
HOUR_MS = 3_600_000
TARGET_P95_MS = 100.0
TARGET_INCREMENTAL_S = 30.0

# The analyst questions. Windows end at the newest data (the benchmark's "now").
QUERIES: dict[str, str] = {
    # One model's hourly latency and cost (fct_llm_requests_hourly; index model, hour).
    "model_hourly_24h": """
        select
            request_hour_at,
            sum(request_count) as request_count,
            sum(error_count) as error_count,
            sum(latency_avg_ms * success_count) / nullif(sum(success_count), 0)
                as latency_avg_ms,
            max(latency_p95_ms) as latency_p95_ms_worst_application,
            sum(cost_usd) as cost_usd
        from marts.fct_llm_requests_hourly
        where request_model = %(model)s
            and request_hour_at >= %(now)s - interval '24 hours'
            and request_hour_at < %(now)s
        group by request_hour_at
        order by request_hour_at
    """,
    "model_hourly_7d": """
        select
            request_hour_at,
            sum(request_count) as request_count,
            sum(error_count) as error_count,
            sum(latency_avg_ms * success_count) / nullif(sum(success_count), 0)
                as latency_avg_ms,
            max(latency_p95_ms) as latency_p95_ms_worst_application,
            sum(cost_usd) as cost_usd
        from marts.fct_llm_requests_hourly
        where request_model = %(model)s
            and request_hour_at >= %(now)s - interval '7 days'
            and request_hour_at < %(now)s
        group by request_hour_at
        order by request_hour_at
    """,
    # One tenant's daily cost for 30 days (fct_llm_cost_daily; index tenant, day).
    "tenant_daily_cost_30d": """
        select
            usage_date,
            sum(cost_usd) as cost_usd,
            sum(estimated_cost_usd) as estimated_cost_usd,
            sum(billed_cost_usd) as billed_cost_usd,
            sum(request_count) as request_count
        from marts.fct_llm_cost_daily
        where tenant_id = %(tenant)s
            and usage_date > (%(now)s at time zone 'utc')::date - 30
            and usage_date <= (%(now)s at time zone 'utc')::date
        group by usage_date
        order by usage_date
    """,
    # Top 10 models by p95 latency yesterday (fct_llm_requests_daily; index day): p95 is per
    # row (application x version), so a model ranks by its worst application's p95.
    "top10_models_p95_yesterday": """
        select
            provider,
            request_model,
            sum(request_count) as request_count,
            max(latency_p95_ms) as latency_p95_ms,
            sum(latency_avg_ms * success_count) / nullif(sum(success_count), 0)
                as latency_avg_ms
        from marts.fct_llm_requests_daily
        where request_date = (%(now)s at time zone 'utc')::date - 1
        group by provider, request_model
        order by latency_p95_ms desc nulls last
        limit 10
    """,
}
TENANT_SCOPED_QUERY = "tenant_daily_cost_30d"


@dataclass
class LoadReport:
    rows: Counter[str]
    rejected: Counter[str]  # "topic:error class" -> dead-lettered messages
    seconds: float

    @property
    def telemetry(self) -> int:
        return self.rows["llm_requests"]


def recreate_database(admin_url: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        name = sql.Identifier(DATABASE)
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(name))
        conn.execute(sql.SQL("create database {}").format(name))


def drop_database(admin_url: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        name = sql.Identifier(DATABASE)
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(name))


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    )


def load(
    settings: Settings,
    messages: Iterable[Message],
    next_offset: Counter[str],
    telemetry_total: int,
    what: str,
) -> LoadReport:
    """Normalise ``messages`` and write them with ``RawWriter`` in batches of ``BATCH_ROWS``.

    Each topic is partition 0 with consecutive offsets (continued from ``next_offset``, which is
    advanced), so raw.kafka_offsets ends where a Kafka ingestion of the same messages would.
    """
    normalizers = {topic: Normalizer(spec, settings) for topic, spec in BY_TOPIC.items()}
    rows: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    started = time.monotonic()
    with (
        psycopg.connect(settings.database_url) as conn,
        progress_bar() as progress,
    ):
        task = progress.add_task(what, total=telemetry_total)
        writer = RawWriter(conn, consumer_group="llmhub-bench-query")
        batch, size, now = Batch(), 0, datetime.now(UTC)
        for message in messages:
            offset = next_offset[message.topic]
            next_offset[message.topic] += 1
            normalizer = normalizers[message.topic]
            row = normalizer.normalize(message.value, 0, offset, now)
            source = Source(message.topic, 0, offset, message.key, message.value)
            if type(row) is Rejection:
                # Dead-lettered as ingestion would: the offsets still advance past it.
                batch.dead_letters.append(DeadLetter(source, row.error_class, row.error))
                rejected[f"{message.topic}:{row.error_class}"] += 1
            else:
                batch.add_row(normalizer.table.name, row, source)
            start, _ = batch.offsets.get((message.topic, 0), (offset, offset))
            batch.offsets[(message.topic, 0)] = (start, offset + 1)
            size += 1
            if size >= BATCH_ROWS:
                _write(writer, batch, rows, progress, task)
                batch, size, now = Batch(), 0, datetime.now(UTC)
        if size:
            _write(writer, batch, rows, progress, task)
    return LoadReport(rows, rejected, time.monotonic() - started)


def _write(
    writer: RawWriter, batch: Batch, rows: Counter[str], progress: Progress, task: TaskID
) -> None:
    result = writer.write(batch)
    rows.update(result.inserted)
    progress.update(task, advance=result.inserted.get("llm_requests", 0))


def split_last_hour(
    messages: Iterable[Message], cutoff_ms: int, held: list[Message]
) -> Iterator[Message]:
    """Yield messages before ``cutoff_ms``; append the rest to ``held``."""
    for message in messages:
        if message.timestamp_ms is not None and message.timestamp_ms >= cutoff_ms:
            held.append(message)
        else:
            yield message


def dbt_env(settings: Settings) -> dict[str, str]:
    """The dbt profile's connection variables for the benchmark database."""
    url = urlsplit(settings.database_url)
    env = {
        **os.environ,
        "LLMHUB_DB_NAME": DATABASE,
        "LLMHUB_DB_HOST": url.hostname or "127.0.0.1",
        "LLMHUB_DB_PORT": str(url.port or 5432),
        "LLMHUB_DB_USER": url.username or "postgres",
    }
    if url.password:
        env["LLMHUB_DB_PASSWORD"] = url.password
    return env


@dataclass(frozen=True)
class DbtRun:
    seconds: float
    nodes: dict[str, float]  # node name -> execution seconds (run_results.json)

    def slowest(self, count: int = 3) -> list[dict[str, Any]]:
        ranked = sorted(self.nodes.items(), key=lambda item: item[1], reverse=True)
        return [{"node": name, "s": round(seconds, 2)} for name, seconds in ranked[:count]]


def run_dbt(settings: Settings, target: Path, *args: str) -> DbtRun:
    """Run dbt with its own target and log paths (other runs may share the project
    directory); returns the wall time and each node's execution time."""
    command = [
        str(DBT),
        *args,
        "--profiles-dir",
        ".",
        "--target-path",
        str(target / "target"),
        "--log-path",
        str(target / "logs"),
    ]
    started = time.monotonic()
    result = subprocess.run(
        command, cwd=DBT_PROJECT, env=dbt_env(settings), capture_output=True, text=True
    )
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        console.print(result.stdout[-8000:])
        raise SystemExit(f"dbt {' '.join(args)} failed with exit code {result.returncode}")
    run_results = json.loads((target / "target" / "run_results.json").read_text())
    return DbtRun(
        elapsed,
        {r["unique_id"].split(".", 2)[-1]: r["execution_time"] for r in run_results["results"]},
    )


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples_ms, n=100, method="inclusive")
    return {
        "p50_ms": round(statistics.median(samples_ms), 2),
        "p95_ms": round(cuts[94], 2),
        "p99_ms": round(cuts[98], 2),
        "max_ms": round(max(samples_ms), 2),
    }


def time_query(
    conn: psycopg.Connection, query: str, params: dict[str, Any], repeat: int, warmup: int = 3
) -> tuple[dict[str, float], int]:
    """Client-side latency (execute + fetch all) of ``repeat`` runs after ``warmup`` runs."""
    samples: list[float] = []
    rows = 0
    for i in range(warmup + repeat):
        started = time.perf_counter()
        rows = len(conn.execute(query, params).fetchall())  # type: ignore[arg-type]
        if i >= warmup:
            samples.append((time.perf_counter() - started) * 1000)
    return percentiles(samples), rows


def run_queries(settings: Settings, now: datetime, repeat: int) -> dict[str, dict[str, Any]]:
    """Every query as ``analyst``, and the tenant query again as a role granted one tenant."""
    scoped_role = f"llmhub_bench_{uuid.uuid4().hex[:8]}"
    results: dict[str, dict[str, Any]] = {}
    # No server-side prepared statements: every run is parsed and planned, as an ad-hoc
    # analyst query is.
    with psycopg.connect(settings.database_url, autocommit=True, prepare_threshold=None) as conn:
        model = conn.execute(
            "select request_model from marts.fct_llm_requests_hourly group by request_model "
            "order by sum(request_count) desc limit 1"
        ).fetchone()[0]
        tenant = conn.execute(
            "select tenant_id from marts.fct_llm_cost_daily group by tenant_id "
            "order by sum(request_count) desc limit 1"
        ).fetchone()[0]
        params = {"model": model, "tenant": tenant, "now": now}
        console.log(f"queries for model {model}, tenant {tenant}, now {now.isoformat()}")
        conn.execute(sql.SQL("create role {} nologin").format(sql.Identifier(scoped_role)))
        try:
            conn.execute("select marts_access.grant_tenant(%s, %s)", (scoped_role, tenant))
            conn.execute("set role analyst")
            for name, query in QUERIES.items():
                stats, rows = time_query(conn, query, params, repeat)
                results[name] = {**stats, "rows": rows, "role": "analyst"}
            conn.execute(sql.SQL("set role {}").format(sql.Identifier(scoped_role)))
            stats, rows = time_query(conn, QUERIES[TENANT_SCOPED_QUERY], params, repeat)
            results[f"{TENANT_SCOPED_QUERY}_tenant_role"] = {
                **stats,
                "rows": rows,
                "role": "tenant_analyst (one tenant granted)",
            }
        finally:
            conn.execute("reset role")
            conn.execute("select marts_access.revoke_tenant(%s, %s)", (scoped_role, tenant))
            conn.execute(sql.SQL("drop role {}").format(sql.Identifier(scoped_role)))
    return results


def mart_rows(settings: Settings) -> dict[str, int]:
    with psycopg.connect(settings.database_url) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "select tablename from pg_tables where schemaname = 'marts' order by tablename"
            )
        ]
        return {
            table: conn.execute(
                sql.SQL("select count(*) from {}").format(sql.Identifier("marts", table))
            ).fetchone()[0]
            for table in tables
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--events", type=int, default=10_000_000, help="request events in the 30 days loaded"
    )
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--repeat", type=int, default=50, help="runs per query")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()

    base = load_settings()
    admin_url = with_database(base.database_url, "postgres")
    settings = replace(base, database_url=with_database(base.database_url, DATABASE))
    recreate_database(admin_url)
    migrate(settings)

    # One plan over days + 1 hour, the newest hour held back for the incremental build. Its
    # busiest hours hold about twice the mean, so 2.5 mean hours on top keep the loaded days
    # at or above --events.
    hours = args.days * 24
    planned = args.events + math.ceil(2.5 * args.events / hours)
    traffic = generate(events=planned, days=args.days + 1 / 24, seed=args.seed, incidents=True)
    end_ms = int(traffic.end.timestamp() * 1000)
    held: list[Message] = []
    offsets: Counter[str] = Counter()
    console.log(
        f"loading {args.days:g} days ({traffic.start:%Y-%m-%d %H:%M} to "
        f"{traffic.end - timedelta(hours=1):%Y-%m-%d %H:%M} UTC) through the normaliser and writer"
    )
    loaded = load(
        settings,
        split_last_hour(traffic.iter_messages(), end_ms - HOUR_MS, held),
        offsets,
        args.events,
        "raw load",
    )
    console.log(
        f"loaded {sum(loaded.rows.values()):,} rows ({loaded.telemetry:,} requests) in "
        f"{loaded.seconds:.0f} s; {sum(loaded.rejected.values())} dead-lettered "
        f"{dict(loaded.rejected)}; {len(held):,} messages held back"
    )
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        for table in RAW_TABLES:
            conn.execute(sql.SQL("analyze {}").format(sql.Identifier("raw", table)))

    # Other work on the machine skews every timing here: the 1-minute load average before
    # each timed step goes into the result.
    load_avg: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="llmhub-bench-dbt-") as scratch:
        target = Path(scratch)
        console.log("dbt build (first, full)")
        load_avg["full_build"] = os.getloadavg()[0]
        full = run_dbt(settings, target, "build")
        console.log(f"dbt build took {full.seconds:.1f} s")
        held_telemetry = sum(1 for m in held if m.topic == TELEMETRY_TOPIC)
        hour = load(settings, held, offsets, held_telemetry, "newest hour")
        selector = " ".join(INCREMENTAL_MODELS)
        console.log(f"dbt build -s {selector} (incremental, {hour.telemetry:,} new requests)")
        load_avg["incremental"] = os.getloadavg()[0]
        incremental = run_dbt(settings, target, "build", "--select", *INCREMENTAL_MODELS)
        console.log(f"incremental build took {incremental.seconds:.1f} s")

    now = traffic.end
    console.log(f"running {len(QUERIES) + 1} queries x {args.repeat}")
    load_avg["queries"] = os.getloadavg()[0]
    queries = run_queries(settings, now, args.repeat)
    rows_in_marts = mart_rows(settings)

    worst_p95 = max(q["p95_ms"] for q in queries.values())
    result = {
        "benchmark": "query_latency",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_avg_1m_before": {step: round(value, 2) for step, value in load_avg.items()},
        "load_path": "synthetic generate() -> Normalizer -> RawWriter (COPY), no Kafka",
        "days": args.days,
        "seed": args.seed,
        "raw_request_events": loaded.telemetry,
        "raw_rows_all_tables": sum(loaded.rows.values()),
        "load_s": round(loaded.seconds, 1),
        "load_rows_per_s": round(sum(loaded.rows.values()) / loaded.seconds, 1),
        # Dead-lettered by the normaliser (the contract), as ingestion would.
        "dead_lettered": dict(loaded.rejected + hour.rejected),
        "dbt_full_build_s": round(full.seconds, 2),
        "dbt_full_build_slowest": full.slowest(),
        "incremental_hour_request_events": hour.telemetry,
        "dbt_incremental_hour_s": round(incremental.seconds, 2),
        "dbt_incremental_select": selector,
        # The two models' own run time, without dbt's start-up and the tests.
        "dbt_incremental_models_s": round(
            sum(incremental.nodes.get(model, 0.0) for model in INCREMENTAL_MODELS), 2
        ),
        "dbt_incremental_slowest": incremental.slowest(),
        "mart_rows": rows_in_marts,
        "repeat": args.repeat,
        "queries": queries,
        "worst_query_p95_ms": worst_p95,
        "targets": {"query_p95_ms": TARGET_P95_MS, "incremental_hour_s": TARGET_INCREMENTAL_S},
        "targets_met": worst_p95 < TARGET_P95_MS and incremental.seconds < TARGET_INCREMENTAL_S,
        "database_kept": args.keep,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "query_latency.json").write_text(json.dumps(result, indent=2) + "\n")
    if not args.keep:
        drop_database(admin_url)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
