"""Ingestion throughput: Kafka -> TimescaleDB end to end, against a raw COPY of the same rows.

1. Preloads N telemetry events (synthetic, realistic sizes) into fresh benchmark topics.
2. Times ``llmhub ingest --until-caught-up`` as a subprocess from start to caught up, sampling
   the resident memory of its whole process tree.
3. Exports the rows it stored, truncates, and times COPYing them back into the same hypertable
   in batches of the same size: the practical write limit of this machine for that table.
4. Repeats 2-3 (``--rounds``, 3) over the same events from an empty table: the two phases of a
   round run minutes apart on a machine whose speed drifts, so one round's ratio is noisy. The
   round of median ratio gives the top-level figures; every round's are listed.

Runs in its own database (``llmhub_bench``, recreated) so it never touches the demo's data.
The last line printed is one JSON object; it is also written to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import psutil
import psycopg
from kafka.admin import KafkaAdminClient
from psycopg import sql
from rich.console import Console

from llmhub.config import load_settings, with_database
from llmhub.db import migrate
from llmhub.ingest.tables import TABLES
from llmhub.producers.sink import make_producer, send_all
from llmhub.producers.synthetic import generate
from llmhub.stack.broker import ensure_topics

console = Console(stderr=True)
TABLE = TABLES["llm_requests"]
RESULTS = Path(__file__).parent / "results"


def recreate_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))


def preload(settings, events: int, seed: int) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    """Send ``events`` telemetry messages (only the telemetry family) to the prefixed topic."""
    traffic = generate(events=events, days=7.0, seed=seed, incidents=False)
    telemetry = (
        replace(m, topic=settings.topic(m.topic))
        for m in traffic.iter_messages()
        if m.topic == "llm.telemetry"
    )
    producer = make_producer(settings.kafka_bootstrap)
    started = time.monotonic()
    try:
        sent = send_all(producer, telemetry, progress=console.is_terminal)
    finally:
        producer.close()
    return sent, time.monotonic() - started


class TreeMemory:
    """Samples the summed RSS of a process and its children every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
                rss = sum(p.memory_info().rss for p in procs if p.is_running())
                self.samples.append((time.monotonic() - started, rss / 2**20))
            except psutil.Error:
                pass
            time.sleep(0.05)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return max((mb for _, mb in self.samples), default=0.0)


def cpu_by_component() -> dict[str, float]:
    """CPU seconds (user + system, exited children included) used so far by the database
    server and the broker: with the ingester's, where the cores go during the run."""
    totals = {"postgres": 0.0, "broker": 0.0}
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            times = proc.cpu_times()
            used = times.user + times.system + times.children_user + times.children_system
            name = (proc.info["name"] or "").lower()
            cmdline = " ".join(proc.info["cmdline"] or ()).lower()
        except psutil.Error:
            continue
        if name.startswith("postgres"):
            totals["postgres"] += used
        elif "tansu" in name or "tansu" in cmdline:
            totals["broker"] += used
    return totals


def run_ingest(settings, workers: int, batch: int, lanes: int | None) -> tuple[float, float, dict]:  # type: ignore[no-untyped-def]
    env = {
        **os.environ,
        "LLMHUB_DATABASE_URL": settings.database_url,
        "LLMHUB_TOPIC_PREFIX": settings.topic_prefix,
        "LLMHUB_CONSUMER_GROUP": settings.consumer_group,
        "LLMHUB_BATCH_MAX_RECORDS": str(batch),
    }
    cmd = [
        str(Path(sys.executable).with_name("llmhub")),
        "ingest",
        "--until-caught-up",
        "--workers",
        str(workers),
        "--topic",
        "llm.telemetry",
        "--json",
        *(["--lanes", str(lanes)] if lanes is not None else []),
    ]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    with TreeMemory(proc.pid) as memory:
        stdout, _ = proc.communicate()
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"llmhub ingest failed with exit code {proc.returncode}")
    return elapsed, memory.peak_mb, json.loads(stdout)


def copy_baseline(database_url: str, batch: int) -> tuple[int, float]:
    """COPY the stored rows back into the emptied hypertable, ``batch`` rows per transaction."""
    columns = sql.SQL(", ").join(map(sql.Identifier, TABLE.columns))
    buffer = io.BytesIO()
    with psycopg.connect(database_url) as conn:
        with conn.cursor().copy(
            sql.SQL("copy (select {} from raw.llm_requests) to stdout (format csv)").format(columns)
        ) as copy:
            for chunk in copy:
                buffer.write(chunk)
        conn.execute("truncate raw.llm_requests")
        conn.commit()
    lines = buffer.getvalue().splitlines(keepends=True)
    target = sql.SQL("copy raw.llm_requests ({}) from stdin (format csv)").format(columns)
    started = time.monotonic()
    with psycopg.connect(database_url) as conn:
        for start in range(0, len(lines), batch):
            with conn.transaction(), conn.cursor().copy(target) as copy:
                copy.write(b"".join(lines[start : start + batch]))
    return len(lines), time.monotonic() - started


def measure_round(settings, database_url: str, args, sent: int, index: int) -> dict:  # type: ignore[no-untyped-def]
    """One end-to-end ingest of the preloaded topic and then the raw COPY of the rows it stored.

    A round after the first starts from an empty table and no stored offsets, so the ingester
    reads the same messages again from the start of the topic."""
    if index:
        with psycopg.connect(database_url) as conn:
            conn.execute("truncate raw.llm_requests")
            conn.execute("delete from raw.kafka_offsets")
            conn.execute("delete from raw.dead_letter")
    cpu_before = cpu_by_component()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    e2e_s, peak_mb, report = run_ingest(settings, args.workers, args.batch, args.lanes)
    cpu_after = cpu_by_component()
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # The ingester and its workers have exited and been waited for: their CPU is in this
    # process's children usage.
    cpu_s = {
        "ingest": (children_after.ru_utime + children_after.ru_stime)
        - (children_before.ru_utime + children_before.ru_stime),
        "postgres": cpu_after["postgres"] - cpu_before["postgres"],
        "broker": cpu_after["broker"] - cpu_before["broker"],
    }
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("select count(*) from raw.llm_requests").fetchone()[0]
    if stored != sent:
        raise SystemExit(f"stored {stored} rows for {sent} events: ingestion is not exact")
    console.log(f"round {index + 1}: ingested in {e2e_s:.1f} s; timing a raw COPY of the rows")
    copy_cpu_before = cpu_by_component()["postgres"]
    copied, copy_s = copy_baseline(database_url, args.batch)
    copy_cpu_s = cpu_by_component()["postgres"] - copy_cpu_before
    ratio = (sent / e2e_s) / (copied / copy_s)
    console.log(f"round {index + 1}: raw COPY {copy_s:.1f} s; ratio {ratio:.3f}")
    return {
        "e2e_s": e2e_s,
        "peak_mb": peak_mb,
        "report": report,
        "cpu_s": cpu_s,
        "stored": stored,
        "copied": copied,
        "copy_s": copy_s,
        "copy_cpu_s": copy_cpu_s,
        "ratio": ratio,
    }


def delete_topics(settings) -> None:  # type: ignore[no-untyped-def]
    """Free the broker's memory: the dev broker keeps every topic in RAM."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        prefixed = [t for t in admin.list_topics() if t.startswith(settings.topic_prefix)]
        if prefixed:
            admin.delete_topics(prefixed)
    finally:
        admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--lanes", type=int, default=None, help="Ingest lanes (default: the CLI's, one per worker)."
    )
    parser.add_argument("--batch", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="Ingest-then-COPY rounds over the same preloaded events; reports the median ratio.",
    )
    parser.add_argument(
        "--database", default="llmhub_bench", help="Scratch database (recreated, then dropped)."
    )
    args = parser.parse_args()

    base = load_settings()
    database_url = with_database(base.database_url, args.database)
    recreate_database(with_database(base.database_url, "postgres"), args.database)
    settings = replace(
        base,
        database_url=database_url,
        topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
        consumer_group="llmhub-bench",
    )
    migrate(settings)
    ensure_topics(settings.kafka_bootstrap, settings.topic_prefix)

    console.log(f"preloading {args.events:,} telemetry events")
    sent, produce_s = preload(settings, args.events, args.seed)
    console.log(f"preloaded {sent:,} in {produce_s:.1f} s; ingesting with {args.workers} workers")
    rounds = [measure_round(settings, database_url, args, sent, i) for i in range(args.rounds)]
    # The round of median ratio stands for the run (its fields are the top-level ones); every
    # round is listed, so the spread is visible.
    median = sorted(rounds, key=lambda r: r["ratio"])[len(rounds) // 2]
    e2e_s, peak_mb, report = median["e2e_s"], median["peak_mb"], median["report"]
    cpu_s, stored = median["cpu_s"], median["stored"]
    copied, copy_s, copy_cpu_s = median["copied"], median["copy_s"], median["copy_cpu_s"]

    e2e_rate = sent / e2e_s
    copy_rate = copied / copy_s
    result = {
        "benchmark": "ingest_throughput",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "events": sent,
        "workers": args.workers,
        "lanes": report.get("lanes", 1),
        "batch_max_records": args.batch,
        "cpus": os.cpu_count(),
        "produce_events_per_s": round(sent / produce_s, 1),
        "e2e_seconds": round(e2e_s, 2),
        "e2e_events_per_s": round(e2e_rate, 1),
        "ingest_reported_events_per_s": report["events_per_s"],
        "copy_rows": copied,
        "copy_seconds": round(copy_s, 2),
        "copy_rows_per_s": round(copy_rate, 1),
        "ratio": round(e2e_rate / copy_rate, 3),
        "peak_rss_mb": round(peak_mb, 1),
        "stored_rows": stored,
        # Seconds per stage, summed over the ingester's batches (and workers, which overlap):
        # fetch, decode (JSON + contract + row tuples), format (rows rendered by psycopg),
        # copy (send + server), commit.
        "stages_s": {stage: round(s, 2) for stage, s in report.get("stage_s", {}).items()},
        # CPU seconds during the ingest run per component (the database counts every
        # backend, so other clients of the same server show up here too).
        "cpu_s": {name: round(value, 2) for name, value in cpu_s.items()},
        # The database's CPU seconds during the raw COPY, beside its share of the ingest run.
        "copy_cpu_s": {"postgres": round(copy_cpu_s, 2)},
        "load_avg_1m": round(os.getloadavg()[0], 2),
        # Every round, in order: the top-level figures are those of the median ratio.
        "rounds": [
            {
                "e2e_events_per_s": round(sent / r["e2e_s"], 1),
                "copy_rows_per_s": round(r["copied"] / r["copy_s"], 1),
                "ratio": round(r["ratio"], 3),
                "peak_rss_mb": round(r["peak_mb"], 1),
                "stages_s": {k: round(v, 2) for k, v in r["report"].get("stage_s", {}).items()},
                "cpu_s": {name: round(value, 2) for name, value in r["cpu_s"].items()},
                "copy_cpu_s": round(r["copy_cpu_s"], 2),
            }
            for r in rounds
        ],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ingest_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    with psycopg.connect(with_database(base.database_url, "postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(args.database))
        )
    delete_topics(settings)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
