"""Month-end cost projections and budget breach dates, per tenant and budgeted application."""

import importlib.metadata
import time
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pandas as pd
from pydantic import Field

from assets import groups
from assets.resources import HubResource
from llmhub.ml_data import COST_DAILY_MART, read_frame
from ml.budget import budgets_from_frame, daily_cost_forecasts, project_budgets
from ml.keys import encode_key

TENANT_WIDE = "*"
UPSERT_DAILY_FORECAST = """
insert into analytics.forecasts (
    series_key, tenant_id, asset_id, metric, grain, target_at, forecast_made_at,
    yhat, yhat_lower, yhat_upper, model_name, model_version, mlflow_run_id
) values (%s, %s, %s, 'cost_usd', 'day', %s, %s, %s, %s, %s, %s, %s, null)
on conflict (series_key, metric, grain, target_at, forecast_made_at) do update set
    yhat = excluded.yhat, yhat_lower = excluded.yhat_lower, yhat_upper = excluded.yhat_upper,
    model_name = excluded.model_name, model_version = excluded.model_version
"""
UPSERT_PROJECTION = """
insert into analytics.budget_projections (
    tenant_id, asset_id, month, projected_on, budget_usd, month_to_date_usd,
    projected_month_end_usd, projected_lower_usd, projected_upper_usd, breach_date,
    model_name, model_version, mlflow_run_id
) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, null)
on conflict (tenant_id, asset_id, month, projected_on) do update set
    budget_usd = excluded.budget_usd, month_to_date_usd = excluded.month_to_date_usd,
    projected_month_end_usd = excluded.projected_month_end_usd,
    projected_lower_usd = excluded.projected_lower_usd,
    projected_upper_usd = excluded.projected_upper_usd, breach_date = excluded.breach_date,
    model_name = excluded.model_name, model_version = excluded.model_version,
    mlflow_run_id = excluded.mlflow_run_id
"""


class BudgetProjectionsConfig(dg.Config):
    history_days: int = Field(120, description="Days of daily cost each projection fits on.")
    as_of: str | None = Field(
        None,
        description="Last day of actuals (YYYY-MM-DD); default yesterday (UTC), or the mart's "
        "newest day if it is older.",
    )
    daily_horizon_days: int = Field(
        14, ge=7, le=30, description="Days of daily cost forecast per tenant (7 to 30)."
    )


@dg.asset(
    key=["analytics", "budget_projections"],
    group_name=groups.PUBLISH,
    kinds={"python", "timescaledb"},
    deps=[COST_DAILY_MART],
)
def budget_projections(
    context: dg.AssetExecutionContext, config: BudgetProjectionsConfig, hub: HubResource
) -> dg.MaterializeResult:
    """Projected month-end cost of every tenant, and of every application with its own budget.

    Grain: one row per (tenant, application or ``*``, month, projection day) in
    ``analytics.budget_projections``, from ``marts.fct_llm_cost_daily`` and
    ``analytics.budgets`` (``ml.budget.project_budgets``: the weekly-seasonal ensemble, or the
    7-day run rate on short histories). The model is code, not a registry entry: its version is
    the ``llmhub`` package version. Re-running on the same day replaces that day's rows. The
    same forecaster's daily cost forecast of each tenant (``daily_horizon_days``, 7 to 30) goes
    to ``analytics.forecasts`` with grain ``day`` (series key ``["<tenant>","*"]``, metric
    ``cost_usd``).
    """
    started = time.monotonic()
    with hub.connect() as conn:
        newest = read_frame(conn, "select max(usage_date) as day from marts.fct_llm_cost_daily")
        latest: date | None = newest["day"].iloc[0]
        if latest is None:
            return dg.MaterializeResult(metadata={"rows_written": 0})
        yesterday = datetime.now(UTC).date() - timedelta(days=1)
        as_of = date.fromisoformat(config.as_of) if config.as_of else min(yesterday, latest)
        costs = read_frame(
            conn,
            "select tenant_id, asset_id, usage_date, cost_usd from marts.fct_llm_cost_daily "
            "where usage_date > %s and usage_date <= %s",
            (as_of - timedelta(days=config.history_days), as_of),
        )
        budget_rows = read_frame(
            conn,
            "select tenant_id, nullif(asset_id, %s) as asset_id, monthly_budget_usd "
            "from analytics.budgets",
            (TENANT_WIDE,),
        )
    costs["cost_usd"] = pd.to_numeric(costs["cost_usd"]).astype(float)
    budgets = budgets_from_frame(budget_rows) if not budget_rows.empty else []
    projections = project_budgets(costs, budgets, as_of)
    daily = daily_cost_forecasts(costs, as_of, config.daily_horizon_days)
    version = importlib.metadata.version("llmhub")
    made_at = datetime.combine(as_of + timedelta(days=1), datetime.min.time(), UTC)
    forecast_rows = [
        (
            encode_key(tenant_id, TENANT_WIDE),
            tenant_id,
            TENANT_WIDE,
            day.to_pydatetime().replace(tzinfo=UTC),
            made_at,
            max(0.0, float(point)),
            max(0.0, float(lower)),
            max(0.0, float(upper)),
            forecast.model,
            version,
        )
        for tenant_id, forecast in daily.items()
        for day, point, lower, upper in zip(
            forecast.index, forecast.point, forecast.lower, forecast.upper, strict=True
        )
    ]
    rows = [
        (
            p.tenant_id,
            p.asset_id or TENANT_WIDE,
            p.month,
            p.as_of,
            p.budget_usd,
            p.month_to_date_usd,
            p.projected_month_end_usd,
            p.projected_month_end_lower_usd,
            p.projected_month_end_upper_usd,
            p.breach_date,
            p.model,
            version,
        )
        for p in projections
    ]
    with hub.connect() as conn, conn.transaction(), conn.cursor() as cur:
        cur.executemany(UPSERT_PROJECTION, rows)
        cur.executemany(UPSERT_DAILY_FORECAST, forecast_rows)
    statuses = pd.Series([p.status for p in projections], dtype=str).value_counts().to_dict()
    context.log.info(f"{len(rows)} projections as of {as_of}: {statuses}")
    return dg.MaterializeResult(
        metadata={
            "rows_written": len(rows),
            "daily_forecast_rows": len(forecast_rows),
            "as_of": as_of.isoformat(),
            "statuses": dg.MetadataValue.json(statuses),
            "model_version": version,
            "duration_s": round(time.monotonic() - started, 1),
        }
    )
