"""``make demo``: synthetic traffic -> Kafka -> Dagster ingestion -> TimescaleDB -> dbt marts ->
ML training (MLflow) -> anomalies, forecasts and budget projections -> alerts to five channels
(local receivers), summarised.

Runs the same jobs the schedules run, in-process against the PostgreSQL-backed Dagster instance
(``$DAGSTER_HOME``), so the runs and their metadata show in Dagit afterwards (``make dev``). The
terminal shows one line per step and the summary; everything the steps print (dbt, Great
Expectations, Dagster's own logs, dbt's subprocess output) goes to a log file whose path is
printed first.

The demo is a client of the code location, as Dagit is: it loads the Definitions that
``workspace.yaml`` names instead of importing the orchestration package (which sits above the
domain core).
"""

import importlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TypeVar

import dagster as dg
import yaml
from rich.console import Console
from rich.table import Table

from llmhub.alerts.demo import show_channels
from llmhub.config import Settings, load_settings, mlflow_tracking_uri
from llmhub.db import connect
from llmhub.incidents.report import print_incidents
from llmhub.producers.sink import make_producer, send_all
from llmhub.producers.synthetic import SyntheticTraffic, generate
from llmhub.status import collect_status

WORKSPACE = Path(__file__).resolve().parents[1] / "workspace.yaml"

# Four weeks: the detector fits on two weeks and holds out one; the forecaster backtests on days.
DEMO_EVENTS = 300_000
DEMO_DAYS = 28.0
DEMO_BUDGET_SHARE = 0.5  # of the month's remaining straight-line cost, on top of month to date
MAX_RUNS = 10
# The traffic's seed on a stack that has not run the demo: a fresh install draws the same
# tenants, routes and incidents every time, so its verdicts do not depend on the clock. Each
# later demo on the same stack takes the next seeds (``demo_seed``), so its event ids are new.
DEMO_SEED = 20261130
DEMO_TAGS = {"llmhub/source": "demo"}
# A model-version rollout this many hours before the traffic ends: inside the newest hours the
# scoring job scores (6), with three full hours after it for the engine's change-point test, so
# the run's anomalies open at least one incident (its root cause: the rollout).
DEMO_ROLLOUT_HOURS = 4.5
# Run events go to the instance (Dagit shows them); the console logger writes to the log file.
QUIET = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}

T = TypeVar("T")

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

TOP_ANOMALIES_SQL = """
select bucket_at, tenant_id, asset_id, request_model, metric, observed, expected, score,
       model_version
from analytics.anomalies
where is_anomaly and scored_at >= %s
order by score desc, bucket_at desc
limit 10
"""

TENANT_PROJECTIONS_SQL = """
select tenant_id, month_to_date_usd, projected_month_end_usd, projected_lower_usd,
       projected_upper_usd, budget_usd, breach_date
from analytics.budget_projections
where asset_id = '*' and month = date_trunc('month', current_date)::date
    and projected_on = (select max(projected_on) from analytics.budget_projections)
order by projected_month_end_usd desc
"""

# Every tenant gets a budget halfway between its month-to-date cost and a straight-line
# projection of the month, so the projections have a budget to break later this month.
DEMO_BUDGETS_SQL = """
with month_to_date as (
    select tenant_id, sum(cost_usd) as cost_usd
    from marts.fct_llm_cost_daily
    where usage_date >= date_trunc('month', current_date)
    group by tenant_id
    having sum(cost_usd) > 0
)
insert into analytics.budgets (tenant_id, monthly_budget_usd)
select tenant_id,
       round((cost_usd * (1 + %s * (extract(day from (date_trunc('month', current_date)
           + interval '1 month - 1 day')) / extract(day from current_date) - 1)))::numeric, 2)
from month_to_date
on conflict (tenant_id, asset_id) do update
    set monthly_budget_usd = excluded.monthly_budget_usd, updated_at = now()
"""

# Two SLOs per tenant (availability 99%, p95 latency under 5 s) for the SLO marts and alerts.
DEMO_SLOS_SQL = """
insert into alerting.slo_objectives (
    slo_id, tenant_id, asset_id, kind, objective, latency_percentile, latency_threshold_ms
)
select tenant_id || ':' || slo.suffix, tenant_id, '*', slo.kind, slo.objective, slo.percentile,
       slo.threshold_ms
from (select distinct tenant_id from raw.llm_requests) as tenants
cross join (
    values ('availability', 'availability', 0.99, null::float, null::float),
           ('latency-p95', 'latency', 0.95, 0.95, 5000.0)
) as slo (suffix, kind, objective, percentile, threshold_ms)
on conflict (slo_id) do nothing
"""


def load_definitions(workspace: Path = WORKSPACE) -> dg.Definitions:
    """The Definitions of the (first) code location ``workspace`` names, as Dagit loads them."""
    locations = yaml.safe_load(workspace.read_text())["load_from"]
    module = importlib.import_module(locations[0]["python_module"]["module_name"])
    return module.defs


@contextmanager
def captured_output(log_path: Path) -> Iterator[None]:
    """Send this process's stdout and stderr, and those of its children (the dbt CLI), to
    ``log_path`` (appended) until the block ends.

    File descriptors 1 and 2 are redirected, not only ``sys.stdout``: dbt runs as a subprocess
    and libraries hold their own references to the streams. ``sys.stdout``/``sys.stderr`` are
    rebound to the redirected descriptors too, for code that replaced them (pytest does).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_fds = os.dup(1), os.dup(2)
    saved_streams = sys.stdout, sys.stderr
    try:
        with log_path.open("ab") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
            sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
    finally:
        sys.stdout, sys.stderr = saved_streams
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        os.close(saved_fds[0])
        os.close(saved_fds[1])


def terminal() -> IO[str]:
    """A stream on the terminal that stays there while ``captured_output`` is active."""
    return os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)


def step(console: Console, title: str, action: Callable[[], T]) -> T:
    """Run ``action`` under a spinner, then print one line with the step's duration."""
    started = time.monotonic()
    with console.status(title):
        result = action()
    console.print(f"[green]done[/] {title} [dim]({time.monotonic() - started:,.0f} s)[/]")
    return result


def main() -> None:
    settings = load_settings()
    instance = dg.DagsterInstance.get()
    started_at = datetime.now(UTC)
    log_path = Path(instance.root_directory) / "logs" / f"demo-{started_at:%Y%m%dT%H%M%SZ}.log"
    console = Console(file=terminal())
    console.print(f"Detail of every step (dbt, Great Expectations, Dagster): {log_path}")
    with captured_output(log_path):
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, force=True)
        run(settings, instance, console, started_at)


def demo_seed(instance: dg.DagsterInstance) -> int:
    """``DEMO_SEED`` plus the demo's earlier ingestion runs on ``instance``: the same on every
    fresh install, a new one (new event ids) for every later demo on the same stack."""
    return DEMO_SEED + instance.get_runs_count(dg.RunsFilter(tags=DEMO_TAGS))


def demo_traffic(seed: int, end: datetime | None = None) -> SyntheticTraffic:
    """The demo's traffic: ``DEMO_DAYS`` ending at ``end`` (default now), its incidents and
    the model rollout."""
    return generate(
        events=DEMO_EVENTS,
        days=DEMO_DAYS,
        seed=seed,
        end=end,
        incidents=True,
        rollout_hours=DEMO_ROLLOUT_HOURS,
    )


def run(
    settings: Settings, instance: dg.DagsterInstance, console: Console, started_at: datetime
) -> None:
    """The demo's steps, printing progress and the summary on ``console``."""
    defs = step(console, "load the Dagster code location", load_definitions)
    seed = demo_seed(instance)

    def execute(
        name: str, run_config: dict | None = None, **kwargs: object
    ) -> dg.ExecuteInProcessResult:
        return defs.resolve_job_def(name).execute_in_process(
            instance=instance, run_config={**QUIET, **(run_config or {})}, **kwargs
        )

    def require(result: dg.ExecuteInProcessResult, name: str) -> None:
        if not result.success:
            raise SystemExit(f"{name} run {result.run_id} failed; see Dagit and the log file")

    console.rule("1. Produce synthetic traffic to Kafka")
    traffic = demo_traffic(seed)

    def produce() -> int:
        producer = make_producer(settings.kafka_bootstrap)
        try:
            return send_all(producer, traffic.iter_messages())
        finally:
            producer.close()

    sent = step(console, f"send {DEMO_DAYS:g} days of traffic to Kafka", produce)
    console.print(f"sent {sent:,} messages with {len(traffic.incidents)} injected incidents")

    console.rule("2. Dagster ingestion_job (Kafka -> raw hypertables)")
    for attempt in range(1, MAX_RUNS + 1):
        result = step(
            console,
            f"ingestion_job run {attempt}",
            lambda: execute("ingestion_job", tags=DEMO_TAGS),
        )
        require(result, "ingestion_job")
        lag = sum(collect_status(settings).lag.values())
        console.print(f"{result.run_id}: remaining lag {lag:,}")
        if lag == 0:
            break
    retention = step(console, "retention_job", lambda: execute("retention_job"))
    console.print(f"retention_job: {'succeeded' if retention.success else 'FAILED'}")

    # Before the dbt jobs, which build the SLO marts from them.
    with connect(settings, autocommit=True) as conn:
        conn.execute(DEMO_SLOS_SQL)

    console.rule("3. Dagster dbt jobs (raw -> staging -> marts, with dbt tests and GX checks)")
    # The demo's four weeks end now but reach back before the marts' newest hour when an earlier
    # demo ran: a backfill of the window, as an operator would run it, not the 6 h lookback.
    backfill = {
        "ops": {
            "dbt_hourly_models": {
                "config": {
                    "backfill_start": traffic.start.isoformat(),
                    "backfill_end": (traffic.end + timedelta(hours=1)).isoformat(),
                }
            }
        }
    }
    for name, config in (("transform_hourly_job", backfill), ("transform_daily_job", {})):
        result = step(console, name, lambda name=name, config=config: execute(name, config))
        require(result, name)

    console.rule("4. ML: train (MLflow registry + champion gate), score, forecast, project budgets")
    with connect(settings, autocommit=True) as conn:
        conn.execute(DEMO_BUDGETS_SQL, (DEMO_BUDGET_SHARE,))
    training = step(
        console, "ml_training_job", lambda: execute("ml_training_job", raise_on_error=False)
    )
    for evaluation in training.get_asset_check_evaluations():
        verdict = "promoted" if evaluation.passed else "NOT promoted"
        console.print(
            f"{evaluation.asset_key.to_user_string()}: {verdict} ({evaluation.description})"
        )
    ml_ok = training.success
    if not ml_ok:
        console.print(
            f"ml_training_job {training.run_id} failed: a model without a champion blocks its "
            "publishing; see Dagit and MLflow"
        )
    else:
        for name in ("ml_scoring_job", "budget_projections_job", "incidents_job"):
            require(step(console, name, lambda name=name: execute(name)), name)

    console.rule("5. Alerts: what Slack, PagerDuty, Teams, a webhook and email would receive")
    step(
        console,
        "route the alert sources to local receivers",
        lambda: show_channels(settings.database_url, console=console),
    )

    console.rule("6. Summary")
    print_summary(console, settings, started_at if ml_ok else None)


def print_summary(console: Console, settings: Settings, ml_since: datetime | None) -> None:
    """Raw row counts, yesterday per model, and (``ml_since``) the ML outputs of this run."""
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
    if ml_since is not None:
        print_ml_summary(console, settings, ml_since)
    console.print(
        "Dagit: run [bold]make dev[/] and open http://127.0.0.1:3000 (runs above are stored in "
        f"the Dagster instance at {settings.dagster_storage_url.rsplit('@', 1)[-1]})."
    )


def format_value(value: float) -> str:
    """An anomaly's observed or expected value: one decimal, or three significant digits below
    1 (a cost per request is a fraction of a cent, which one decimal shows as 0.0)."""
    return f"{value:,.1f}" if abs(value) >= 1 or value == 0 else f"{value:.3g}"


def print_ml_summary(console: Console, settings: Settings, since: datetime) -> None:
    """Top anomalies scored since ``since``, each tenant's projected month-end cost, and where
    the models are."""
    with connect(settings, autocommit=True) as conn:
        anomalies = conn.execute(TOP_ANOMALIES_SQL, (since,)).fetchall()
        projections = conn.execute(TENANT_PROJECTIONS_SQL).fetchall()
    table = Table(title="top anomalies scored by this run (analytics.anomalies)")
    for column in (
        "hour (UTC)",
        "tenant",
        "application",
        "model",
        "metric",
        "observed",
        "expected",
        "score",
    ):
        table.add_column(column)
    for at, tenant, asset, model, metric, observed, expected, score, _ in anomalies:
        table.add_row(
            f"{at:%Y-%m-%d %H:%M}",
            tenant,
            asset,
            model,
            metric,
            format_value(observed),
            format_value(expected),
            f"{score:.2f}",
        )
    if not anomalies:
        table.caption = "no anomaly in the newest scored hours"
    console.print(table)
    with connect(settings, autocommit=True) as conn:
        print_incidents(conn, since, console)
    table = Table(title="projected month-end cost per tenant (analytics.budget_projections)")
    for column in ("tenant", "month to date", "projected", "95% interval", "budget", "breach"):
        table.add_column(column, justify="left" if column == "tenant" else "right")
    for tenant, mtd, projected, lower, upper, budget, breach in projections:
        table.add_row(
            tenant,
            f"${mtd:,.2f}",
            f"${projected:,.2f}",
            f"${lower:,.2f} - ${upper:,.2f}",
            f"${budget:,.2f}" if budget is not None else "-",
            f"{breach:%Y-%m-%d}" if breach else "-",
        )
    console.print(table)
    console.print(
        f"MLflow: {mlflow_tracking_uri()} -> experiments llmhub/anomaly_detector and "
        "llmhub/request_rate_forecaster (metrics, plots/*.png), Models -> "
        "llmhub-anomaly-detector and llmhub-request-rate-forecaster (alias `champion`)."
    )


if __name__ == "__main__":
    main()
