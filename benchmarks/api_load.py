"""HTTP API load: OTLP ingest spans/s (all in Kafka) and query latency at 50 and 200 clients.

1. A bench database (``llmhub_test_api_bench``, recreated; dropped unless ``--keep``): migrated,
   the request marts created empty by dbt (their indexes and row-level security), then filled
   directly by SQL with ``--tenants x --apps x --models`` series (5,000 by default) over
   ``--days`` days of hours and days: the marts of a realistic organisation, not the pipeline.
2. ``llmhub serve`` with ``--workers`` processes, as role ``llmhub_api``, quotas set high (each
   request still takes its quota tokens from PostgreSQL).
3. Ingest: locust (headless) users posting one OTLP/protobuf request of ``--spans`` GenAI spans
   back to back for ``--ingest-seconds``; spans/s accepted = acknowledged requests x spans / s.
   The topic is then read back and counted (Tansu's end offsets are not the log end).
4. Query: locust users, each watching a random tenant's dashboard (benchmarks/locust_api.py:
   six panels per tenant, relative to now, plus one ad-hoc question in ten) through
   ``GET /api/v1/metrics`` for ``--query-seconds`` at 50 and at 200 concurrent clients,
   ``--think`` seconds between a user's requests (``0.5-1.5``: uniform; ``0``: closed loop);
   p50/p95/p99 from locust (also by ``Cache-Status`` and by panel), the API's and the
   database's CPU per request, locust's own CPU (``locust_cpu_share``; ``--locust-processes``
   forks several), and the share of answers served from the API's results cache.

The last line printed is one JSON object; it is also written to benchmarks/results/api_load.json
(api_load_closed_loop.json with ``--think 0``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from psycopg import sql
from rich.console import Console

from llmhub.api.keys import create_key
from llmhub.config import load_settings, with_database
from llmhub.db import migrate
from llmhub.stack.broker import ensure_topics

console = Console(stderr=True)
DATABASE = os.environ.get("LLMHUB_BENCH_API_DATABASE", "llmhub_test_api_bench")
RESULTS = Path(__file__).parent / "results"
DBT_PROJECT = Path(__file__).resolve().parents[1] / "dbt_project"
BIN = Path(sys.executable).parent
HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_marts(url: str, workdir: Path) -> None:
    env = {**os.environ, "LLMHUB_DB_NAME": DATABASE}
    result = subprocess.run(
        [
            str(BIN / "dbt"),
            "build",
            "--select",
            "+fct_llm_requests_hourly",
            "+fct_llm_requests_daily",
            "--exclude-resource-type",
            "test",
            "--profiles-dir",
            ".",
            "--target-path",
            str(workdir / "target"),
            "--log-path",
            str(workdir / "logs"),
        ],
        cwd=DBT_PROJECT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"dbt failed:\n{result.stdout[-3000:]}")


FILL = """
insert into marts.{table} (
    {key}, tenant_id, asset_id, asset_version_id, asset_version, provider, request_model,
    {bucket}, {extra_cols} request_count, success_count, error_count, rate_limited_count,
    error_rate, rate_limited_rate, latency_avg_ms, latency_p50_ms, latency_p95_ms,
    latency_p99_ms, time_to_first_token_p50_ms, time_to_first_token_p95_ms,
    output_tokens_per_second, input_tokens, output_tokens, cache_read_tokens,
    generation_output_tokens, generation_time_ms, cost_usd
)
select
    md5(t || '/' || a || '/' || m || '/' || b::text), 'tenant-' || t, 'app-' || a,
    'app-' || a || '@1', '1', case when m %% 2 = 0 then 'openai' else 'anthropic' end,
    'model-' || m, b, {extra_vals} n, n - n / 50 - n / 100, n / 50, n / 100,
    round((n / 50)::numeric / n, 6), round((n / 100)::numeric / n, 6),
    500 + m * 10, 400 + m * 10, 900 + m * 20, 1500 + m * 30, 150, 300, 40,
    n * 500, n * 120, n * 50, n * 120, n * 3000, n * 0.002
from generate_series(1, %(tenants)s) as t
cross join generate_series(1, %(apps)s) as a
cross join generate_series(1, %(models)s) as m
cross join generate_series(%(lo)s::timestamptz, %(hi)s::timestamptz, %(step)s::interval) as b
cross join lateral (select ({scale} * (20 + floor(random() * 200)))::int as n) as x
"""


def fill_marts(url: str, tenants: int, apps: int, models: int, days: int) -> dict[str, int]:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    params = {"tenants": tenants, "apps": apps, "models": models}
    counts = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for table, key, bucket, step, extra_cols, extra_vals, scale in (
            (
                "fct_llm_requests_hourly",
                "request_hour_key",
                "request_hour_at",
                "1 hour",
                "request_date,",
                "(b at time zone 'utc')::date,",
                1,
            ),
            ("fct_llm_requests_daily", "request_day_key", "request_date", "1 day", "", "", 24),
        ):
            lo = now.timestamp() - days * 86400
            query = FILL.format(
                table=table,
                key=key,
                bucket=bucket,
                extra_cols=extra_cols,
                extra_vals=extra_vals,
                scale=scale,
            )
            if bucket == "request_date":
                query = query.replace("'model-' || m, b,", "'model-' || m, b::date,")
            # Indexes dropped for the bulk insert and rebuilt after: several times faster than
            # maintaining five B-trees (one on random md5 keys) row by row.
            indexes = [
                row[0]
                for row in conn.execute(
                    "select indexdef from pg_indexes where schemaname = 'marts' and tablename = %s",
                    (table,),
                )
            ]
            for (name,) in conn.execute(
                "select indexname from pg_indexes where schemaname = 'marts' and tablename = %s",
                (table,),
            ).fetchall():
                conn.execute(sql.SQL("drop index marts.{}").format(sql.Identifier(name)))
            conn.execute(
                sql.SQL(query),  # fixed text of this module
                {**params, "lo": datetime.fromtimestamp(lo, UTC), "hi": now, "step": step},
            )
            for definition in indexes:
                conn.execute(sql.SQL(definition))  # read back from pg_indexes
            conn.execute(sql.SQL("analyze marts.{}").format(sql.Identifier(table)))
            counts[table] = conn.execute(
                sql.SQL("select count(*) from marts.{}").format(sql.Identifier(table))
            ).fetchone()[0]
    return counts


def _kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def otlp_payload(spans: int) -> bytes:
    """One export request of ``spans`` chat spans (new-style names), like an SDK batch."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.append(_kv("service.name", "bench-app"))
    ss = rs.scope_spans.add()
    now = time.time_ns()
    for i in range(spans):
        span = ss.spans.add()
        span.trace_id = uuid.uuid4().bytes
        span.span_id = uuid.uuid4().bytes[:8]
        span.name = "chat gpt-4o"
        span.start_time_unix_nano = now - 10_000_000_000 + i * 1000
        span.end_time_unix_nano = span.start_time_unix_nano + 800_000_000
        for key, value in (
            ("gen_ai.operation.name", "chat"),
            ("gen_ai.provider.name", "openai"),
            ("gen_ai.request.model", "gpt-4o"),
            ("gen_ai.response.model", "gpt-4o-2024-08-06"),
            ("gen_ai.usage.input_tokens", 100 + i % 50),
            ("gen_ai.usage.output_tokens", 20 + i % 10),
        ):
            span.attributes.append(_kv(key, value))
    return req.SerializeToString()


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def read_cache_stats(stats_path: Path) -> tuple[dict[str, int], dict[str, dict[str, Any]]]:
    """Merge the per-process files of locust_api.py: Cache-Status counts, and latency
    percentiles by status (a hit's tail against a miss's)."""
    counts: dict[str, int] = {}
    latencies: dict[str, list[float]] = {}
    for path in stats_path.parent.glob(stats_path.name + ".*"):
        data = json.loads(path.read_text())
        for status, n in data["counts"].items():
            counts[status] = counts.get(status, 0) + n
        for status, values in data["latencies_ms"].items():
            latencies.setdefault(status, []).extend(values)
    by_status = {
        status: {
            "n": len(values),
            **{f"p{q}_ms": _percentile(values, q / 100) for q in (50, 90, 95, 99)},
        }
        for status, values in latencies.items()
    }
    return counts, by_status


def locust(
    user: str,
    users: int,
    seconds: int,
    host: str,
    env: dict[str, str],
    out: Path,
    processes: int = 1,
) -> dict:
    prefix = out / f"{user}_{users}"
    stats_path = out / f"cache_{user}_{users}.json"
    env = {**env, "LLMHUB_BENCH_CACHE_STATS": str(stats_path)}
    for old in out.glob(stats_path.name + ".*"):
        old.unlink()
    # The load generator's own CPU (all its processes): on two shared cores it competes with
    # the API and PostgreSQL, and a busy gevent loop adds its own delay to what it measures.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0 = time.monotonic()
    subprocess.run(
        [
            str(BIN / "locust"),
            "-f",
            str(HERE / "locust_api.py"),
            user,
            "--headless",
            "-u",
            str(users),
            "-r",
            # Query users arrive over 5 s and are measured from when all are there: 200
            # dashboards opened in the same second measure the opening burst, not the service.
            str(max(1, users // 5) if user == "DashboardUser" else max(users, 10)),
            *(["--reset-stats"] if user == "DashboardUser" else []),
            "-t",
            # Locust 2.47 counts its run time from process start; its imports take seconds here.
            f"{seconds + 10}s",
            "--host",
            host,
            "--csv",
            str(prefix),
            "--only-summary",
            "--loglevel",
            "WARNING",
            *(["--processes", str(processes)] if processes > 1 else []),
        ],
        env={**os.environ, **env},
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=(out / f"locust_{user}_{users}.log").open("wb"),
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    locust_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    with open(f"{prefix}_stats.csv", newline="") as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    agg = rows["Aggregated"]
    if agg["50%"] == "N/A":
        raise RuntimeError(f"locust completed no request; see {out}/locust_{user}_{users}.log")
    cache, by_status = read_cache_stats(stats_path)
    hits, misses = cache.get("hit", 0), cache.get("fwd=miss", 0)
    return {
        "cache_hit_ratio": round(hits / (hits + misses), 3) if hits + misses else None,
        "cache_statuses": cache,
        "latency_by_cache_status": by_status,
        "p99_ms_by_panel": {
            name: float(row["99%"]) for name, row in rows.items() if name != "Aggregated"
        },
        "locust_processes": processes,
        # Whole run (process start, ramp and measured part): CPU seconds per wall second.
        "locust_cpu_share": round(locust_cpu / (time.monotonic() - wall0), 2),
        "requests": int(agg["Request Count"]),
        "failures": int(agg["Failure Count"]),
        "rps": round(float(agg["Requests/s"]), 1),
        "ok_rps": float(agg["Requests/s"]) - float(agg["Failures/s"]),
        "p50_ms": float(agg["50%"]),
        "p95_ms": float(agg["95%"]),
        "p99_ms": float(agg["99%"]),
    }


def server_cpu_s(pid: int) -> float:
    """User + system CPU seconds of the server and its worker processes so far: a figure the
    other jobs on the machine do not inflate the way they inflate wall-clock latency."""
    import psutil

    parent = psutil.Process(pid)
    total = 0.0
    for proc in [parent, *parent.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def database_cpu_s(url: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend serving the API (same host, /proc)."""
    with psycopg.connect(url, autocommit=True) as conn:
        pids = [
            row[0]
            for row in conn.execute(
                "select pid from pg_stat_activity "
                "where datname = current_database() and application_name = 'llmhub-api'"
            )
        ]
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def count_topic(bootstrap: str, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
        total, idle = 0, 0
        while idle < 5:
            batch = consumer.consume(10_000, timeout=1.0)
            idle = 0 if batch else idle + 1
            total += sum(1 for m in batch if m.error() is None)
        return total
    finally:
        consumer.close()


def ingest_phase(
    args: argparse.Namespace,
    host: str,
    ingest_key: str,
    server_pid: int,
    settings: Any,
    workdir: Path,
) -> dict[str, Any]:
    """Locust exporters posting one OTLP request back to back; the topic read back after."""
    payload = workdir / "payload.pb"
    payload.write_bytes(otlp_payload(args.spans))
    console.print(f"[cyan]ingest: {args.ingest_users} exporters x {args.spans} spans ...")
    cpu0 = server_cpu_s(server_pid)
    ingest = locust(
        "IngestUser",
        args.ingest_users,
        args.ingest_seconds,
        host,
        {
            "LLMHUB_BENCH_MODE": "ingest",
            "LLMHUB_BENCH_PAYLOAD": str(payload),
            "LLMHUB_BENCH_INGEST_KEY": ingest_key,
        },
        workdir,
    )
    ingest_cpu = server_cpu_s(server_pid) - cpu0
    load1 = os.getloadavg()[0]
    ok = ingest["requests"] - ingest["failures"]
    in_kafka = count_topic(settings.kafka_bootstrap, settings.topic("llm.telemetry"))
    figures = {
        "spans_per_request": args.spans,
        "exporters": args.ingest_users,
        "seconds": args.ingest_seconds,
        "requests_ok": ok,
        "failures": ingest["failures"],
        "spans_accepted": ok * args.spans,
        "spans_per_s": round(ingest["ok_rps"] * args.spans),
        "spans_in_kafka": in_kafka,
        "request_p50_ms": ingest["p50_ms"],
        "request_p99_ms": ingest["p99_ms"],
        # Spans in Kafka (those answered and those in flight at the end) per API CPU second.
        "api_cpu_s": round(ingest_cpu, 1),
        "spans_per_api_cpu_s": round(in_kafka / ingest_cpu) if ingest_cpu else None,
        "load_avg_1m": round(load1, 2),
    }
    console.print(figures)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--apps", type=int, default=10)
    parser.add_argument("--models", type=int, default=5)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--spans", type=int, default=1000, help="spans per OTLP request")
    parser.add_argument("--ingest-users", type=int, default=8)
    parser.add_argument("--ingest-seconds", type=int, default=30)
    parser.add_argument("--query-seconds", type=int, default=30)
    parser.add_argument("--clients", default="50,200")
    parser.add_argument(
        "--locust-processes", type=int, default=1, help="locust processes (--processes) per phase"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=20,
        help="seconds the same query users run unmeasured before each measured phase (0: cold)",
    )
    parser.add_argument(
        "--think",
        default="0.5-1.5",
        help="seconds between a user's requests: LO-HI uniform (dashboards), or one number "
        "(0: closed loop, the saturation figure)",
    )
    parser.add_argument(
        "--only", choices=("ingest", "query"), help="run one half (ingest skips the mart fill)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    parser.add_argument(
        "--reuse", action="store_true", help="use the database a --keep run left (no refill)"
    )
    args = parser.parse_args()

    base = load_settings()
    admin = with_database(base.database_url, "postgres")
    url = with_database(base.database_url, DATABASE)
    drop = sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(DATABASE))
    if not args.reuse:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(drop)
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(DATABASE)))
    run = uuid.uuid4().hex[:8]
    settings = replace(base, database_url=url, topic_prefix=f"bench{run}.")
    workdir = Path(tempfile.mkdtemp(prefix="api_load_"))
    server: subprocess.Popen[bytes] | None = None
    result: dict[str, Any] = {"benchmark": "api_load", "at": datetime.now(UTC).isoformat()}
    try:
        migrate(settings)
        ensure_topics(settings.kafka_bootstrap, settings.topic_prefix)
        if args.only == "ingest":
            rows = {}
        elif args.reuse:
            with psycopg.connect(url) as conn:
                rows = {
                    table: conn.execute(
                        sql.SQL("select count(*) from marts.{}").format(sql.Identifier(table))
                    ).fetchone()[0]
                    for table in ("fct_llm_requests_hourly", "fct_llm_requests_daily")
                }
        else:
            console.print("[cyan]creating the marts (dbt, empty) ...")
            build_marts(url, workdir)
            console.print(
                f"[cyan]filling {args.tenants * args.apps * args.models} series x "
                f"{args.days} days ..."
            )
            t0 = time.perf_counter()
            rows = fill_marts(url, args.tenants, args.apps, args.models, args.days)
            console.print(f"  {rows} in {time.perf_counter() - t0:.0f} s")
        with psycopg.connect(url, autocommit=True) as conn:
            keys = [
                create_key(conn, f"tenant-{t}", "bench", ("read",), "viewer")[0]
                for t in range(1, args.tenants + 1)
            ]
            ingest_key, _ = create_key(conn, "tenant-1", "bench", ("ingest",), "editor")
        port = free_port()
        host = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "LLMHUB_DATABASE_URL": url,
            "LLMHUB_API_DATABASE_URL": url.replace("postgres@", "llmhub_api@", 1),
            "LLMHUB_TOPIC_PREFIX": settings.topic_prefix,
            "LLMHUB_API_INGEST_RATE": "1e9",
            "LLMHUB_API_INGEST_BURST": "1e9",
            "LLMHUB_API_QUERY_RATE": "1e9",
            "LLMHUB_API_QUERY_BURST": "1e9",
            "LLMHUB_API_MONTHLY_EVENTS": str(10**12),
            "LLMHUB_API_POOL_SIZE": "20",
        }
        log = (workdir / "serve.log").open("wb")
        server = subprocess.Popen(
            [str(BIN / "llmhub"), "serve", "--port", str(port), "--workers", str(args.workers)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{host}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("llmhub serve did not start; see " + str(workdir))
            time.sleep(0.5)
        time.sleep(3)  # every worker up
        load1 = os.getloadavg()[0]
        if args.only != "query":
            result["ingest"] = ingest_phase(args, host, ingest_key, server.pid, settings, workdir)
        result["query"] = {}
        for clients in (int(c) for c in args.clients.split(",")) if args.only != "ingest" else ():
            console.print(f"[cyan]query: {clients} clients ...")
            query_env = {
                "LLMHUB_BENCH_MODE": "query",
                "LLMHUB_BENCH_KEYS": ",".join(keys),
                "LLMHUB_BENCH_THINK_S": args.think.replace("-", ","),
                "LLMHUB_BENCH_APPS": str(args.apps),
                "LLMHUB_BENCH_MODELS": str(args.models),
            }
            if args.warmup:
                # The same users at the same dashboards for a while first, not measured: the
                # steady state of dashboards that have been open, not the API's first minute.
                warm = workdir / "warmup"
                warm.mkdir(exist_ok=True)
                locust(
                    "DashboardUser",
                    clients,
                    args.warmup,
                    host,
                    query_env,
                    warm,
                    args.locust_processes,
                )
            cpu0 = server_cpu_s(server.pid)
            db0 = database_cpu_s(url)
            q = locust(
                "DashboardUser",
                clients,
                args.query_seconds,
                host,
                query_env,
                workdir,
                args.locust_processes,
            )
            cpu = server_cpu_s(server.pid) - cpu0
            db1 = database_cpu_s(url)
            db_cpu = sum(v - db0.get(pid, 0.0) for pid, v in db1.items())
            q["db_cpu_ms_per_request"] = (
                round(1000 * db_cpu / q["requests"], 1) if q["requests"] else None
            )
            q["api_cpu_ms_per_request"] = (
                round(1000 * cpu / q["requests"], 1) if q["requests"] else None
            )
            q["load_avg_1m"] = round(os.getloadavg()[0], 2)
            result["query"][str(clients)] = q
            console.print(q)
        result.update(
            series=args.tenants * args.apps * args.models,
            days=args.days,
            mart_rows=rows,
            workers=args.workers,
            think_s=args.think,
            warmup_s=args.warmup,
            load1_at_start=round(load1, 2),
            load1_at_end=round(os.getloadavg()[0], 2),
            load_avg_1m=round(os.getloadavg()[0], 2),
            cpus=os.cpu_count(),
        )
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
        if not args.keep:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(drop)
        try:
            from confluent_kafka.admin import AdminClient

            from llmhub.contract.topics import TOPICS

            AdminClient({"bootstrap.servers": settings.kafka_bootstrap}).delete_topics(
                [settings.topic(spec.topic) for spec in TOPICS]
            )
        except Exception:  # the prefix is unique; a broker refusing deletion is harmless
            pass
    RESULTS.mkdir(exist_ok=True)
    name = "api_load_closed_loop.json" if args.think.strip() in ("0", "0.0") else "api_load.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
