"""``make demo``: synthetic traffic -> Kafka -> Dagster ingestion job -> TimescaleDB, summarised.

Runs the same jobs the schedules run, in-process against the PostgreSQL-backed Dagster instance
(``$DAGSTER_HOME``), so the runs and their metadata show in Dagit afterwards (``make dev``).
"""

import logging
import time

import dagster as dg
from rich.console import Console
from rich.table import Table

from llmhub.config import load_settings
from llmhub.db import connect
from llmhub.producers.sink import make_producer, send_all
from llmhub.producers.synthetic import generate
from llmhub.status import collect_status
from orchestration.definitions import defs

DEMO_EVENTS = 100_000
DEMO_DAYS = 7.0
MAX_RUNS = 10
# Run events still go to the instance (Dagit shows them); the terminal gets warnings only.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

console = Console()

# Yesterday per model from the daily mart. p95 across a model's rows is request-weighted here,
# an approximation for display: the mart holds the exact p95 per tenant/application row.
TOP_MODELS_SQL = """
select request_model,
       sum(request_count) as requests,
       sum(latency_p95_ms * request_count) / nullif(sum(request_count), 0) as p95_latency_ms,
       sum(error_count)::float / nullif(sum(request_count), 0) as error_rate,
       sum(cost_usd) as cost_usd
from marts.fct_llm_requests_daily
where request_date = current_date - 1
group by request_model
order by requests desc
"""


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    settings = load_settings()
    instance = dg.DagsterInstance.get()
    seed = int(time.time())  # a new seed per demo run: event ids stay unique across runs

    console.rule("1. Produce synthetic traffic to Kafka")
    traffic = generate(events=DEMO_EVENTS, days=DEMO_DAYS, seed=seed, incidents=True)
    producer = make_producer(settings.kafka_bootstrap)
    try:
        sent = send_all(producer, traffic.iter_messages(), progress=console.is_terminal)
    finally:
        producer.close()
    console.print(
        f"sent {sent:,} messages over {DEMO_DAYS:g} days "
        f"with {len(traffic.incidents)} injected incidents"
    )

    console.rule("2. Dagster ingestion_job (Kafka -> raw hypertables)")
    job = defs.resolve_job_def("ingestion_job")
    for attempt in range(1, MAX_RUNS + 1):
        result = job.execute_in_process(
            instance=instance, tags={"llmhub/source": "demo"}, run_config=QUIET
        )
        if not result.success:
            raise SystemExit(f"ingestion_job run {result.run_id} failed; see Dagit")
        lag = sum(collect_status(settings).lag.values())
        console.print(f"run {attempt}: {result.run_id} succeeded, remaining lag {lag:,}")
        if lag == 0:
            break
    retention = defs.resolve_job_def("retention_job").execute_in_process(
        instance=instance, run_config=QUIET
    )
    console.print(f"retention_job: {'succeeded' if retention.success else 'FAILED'}")

    console.rule("3. Dagster dbt jobs (raw -> staging -> marts, with dbt tests and GX checks)")
    for name in ("transform_hourly_job", "transform_daily_job"):
        result = defs.resolve_job_def(name).execute_in_process(instance=instance, run_config=QUIET)
        if not result.success:
            raise SystemExit(f"{name} run {result.run_id} failed; see Dagit")
        console.print(f"{name}: {result.run_id} succeeded")

    console.rule("4. Summary")
    status = collect_status(settings)
    table = Table(title="raw tables")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, count in status.raw_rows.items():
        table.add_row(f"raw.{name}", f"{count:,}")
    table.add_row("raw.dead_letter", f"{status.dead_letter_rows:,}")
    console.print(table)

    models = Table(title="yesterday per model (marts.fct_llm_requests_daily)")
    for column in ("model", "requests", "p95 latency ms", "error rate", "cost USD"):
        models.add_column(column, justify="left" if column == "model" else "right")
    with connect(settings, autocommit=True) as conn:
        for model, requests, p95, error_rate, cost in conn.execute(TOP_MODELS_SQL):
            models.add_row(
                model, f"{requests:,}", f"{p95:,.0f}", f"{error_rate:.2%}", f"{cost or 0:,.2f}"
            )
    console.print(models)
    console.print(
        "Dagit: run [bold]make dev[/] and open http://127.0.0.1:3000 (runs above are stored in "
        f"the Dagster instance at {settings.dagster_storage_url.rsplit('@', 1)[-1]})."
    )


if __name__ == "__main__":
    main()
