"""Month-end cost projection and budget breach dates, per tenant and per application.

Input is the daily cost mart (``fct_llm_cost_daily``: ``tenant_id``, ``asset_id``, ``usage_date``,
``cost_usd``) and monthly budgets, each for a whole tenant or for one of its applications
(``asset_id``). For every tenant, and every application that has its own budget, the daily cost
history up to ``as_of`` is forecast to the end of ``as_of``'s calendar month:

* projected month-end cost = month-to-date actuals + the forecast of the remaining days, with an
  interval from the daily forecast bounds summed over the remaining days. Summing bounds treats
  the daily errors as perfectly correlated, so the month-end interval is conservative (wide):
  cost misses tend to persist (a tenant that runs hot today usually runs hot tomorrow), and a
  budget alert that comes early is cheaper than one that comes late;
* breach date = the first day on which cumulative month spend reaches the budget: from actuals if
  that already happened, else from the point forecast; the earliest and latest dates come from
  the upper and lower bound paths (the latest is ``None`` when the lower path stays below).

Costs never go negative in the forecast (daily bounds and points are clipped at 0). Days without
any cost row count as $0.
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

import numpy as np
import pandas as pd

from ml.forecast.base import Forecast, Forecaster
from ml.forecast.ensemble import default_ensemble
from ml.forecast.naive import RunRate

# Below five weeks of history a weekly-seasonal model has too few seasons to fit (SARIMA needs
# three after differencing); the recent run rate is the honest forecast there.
MIN_DAYS_FOR_SEASONAL_MODELS = 35
WEEK = 7

Status = Literal["no_budget", "ok", "at_risk", "projected_breach", "breached"]


@dataclass(frozen=True)
class Budget:
    """A monthly cost budget for a tenant (``asset_id=None``) or one of its applications."""

    tenant_id: str
    monthly_budget_usd: float
    asset_id: str | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.monthly_budget_usd) or self.monthly_budget_usd <= 0:
            raise ValueError(f"budget of {self.tenant_id}/{self.asset_id} must be positive")


@dataclass(frozen=True)
class BudgetProjection:
    """Projected month-end cost of one tenant (or application) and its budget outlook.

    Attributes:
        tenant_id: the tenant.
        asset_id: the application, or ``None`` for the tenant's total.
        month: first day of the projected calendar month.
        as_of: last day of actuals used.
        model: forecaster name (``actuals`` when no day is left to forecast, ``no_history``
            when the scope has no cost before ``as_of``).
        budget_usd: the monthly budget, ``None`` when the scope has none.
        month_to_date_usd: actual cost from the first of the month to ``as_of``.
        projected_month_end_usd: actuals plus the point forecast of the remaining days.
        projected_month_end_lower_usd: lower end of the month-end interval.
        projected_month_end_upper_usd: upper end of the month-end interval.
        level: nominal coverage of the daily forecast intervals behind the month-end interval.
        breach_date: first day on which cumulative month spend reaches the budget (actual or
            projected); ``None`` when not within the month.
        breach_date_earliest: the same on the upper-bound path.
        breach_date_latest: the same on the lower-bound path.
        is_breached: the actuals already reached the budget.
        forecast: the daily forecast of the remaining days (``None`` when there are none).
    """

    tenant_id: str
    asset_id: str | None
    month: date
    as_of: date
    model: str
    budget_usd: float | None
    month_to_date_usd: float
    projected_month_end_usd: float
    projected_month_end_lower_usd: float
    projected_month_end_upper_usd: float
    level: float
    breach_date: date | None
    breach_date_earliest: date | None
    breach_date_latest: date | None
    is_breached: bool
    forecast: Forecast | None

    @property
    def status(self) -> Status:
        """``breached`` (actuals), ``projected_breach`` (point forecast), ``at_risk`` (upper
        bound only), ``ok``, or ``no_budget``."""
        if self.budget_usd is None:
            return "no_budget"
        if self.is_breached:
            return "breached"
        if self.breach_date is not None:
            return "projected_breach"
        if self.breach_date_earliest is not None:
            return "at_risk"
        return "ok"


def budgets_from_frame(frame: pd.DataFrame) -> list[Budget]:
    """Budgets from a table with ``tenant_id``, ``monthly_budget_usd`` and an optional
    ``asset_id`` column (null: the tenant's total)."""
    missing = {"tenant_id", "monthly_budget_usd"} - set(frame.columns)
    if missing:
        raise ValueError(f"budget table lacks columns {sorted(missing)}")
    asset_ids = frame["asset_id"] if "asset_id" in frame.columns else [None] * len(frame)
    return [
        Budget(
            tenant_id=str(tenant_id),
            monthly_budget_usd=float(amount),
            asset_id=None if pd.isna(asset_id) else str(asset_id),
        )
        for tenant_id, amount, asset_id in zip(
            frame["tenant_id"], frame["monthly_budget_usd"], asset_ids, strict=True
        )
    ]


def default_budget_forecaster(history_days: int, level: float = 0.95) -> Forecaster:
    """The weekly-seasonal ensemble from five weeks of history, the 7-day run rate before."""
    if history_days >= MIN_DAYS_FOR_SEASONAL_MODELS:
        return default_ensemble(season=WEEK, level=level)
    return RunRate(window=WEEK, level=level)


def _daily_history(costs: pd.DataFrame, as_of: pd.Timestamp) -> pd.Series:
    """Daily cost totals from the scope's first cost day to ``as_of``, absent days as 0."""
    daily = costs.groupby("usage_date")["cost_usd"].sum()
    if daily.empty:
        return pd.Series(dtype=float, index=pd.DatetimeIndex([], freq="D"))
    index = pd.date_range(daily.index.min(), as_of, freq="D", name="usage_date")
    return daily.reindex(index, fill_value=0.0).astype(float)


def _first_reaching(
    start: date, cumulative: np.ndarray, budget: float | None, offset: int = 0
) -> date | None:
    """The date of the first position where ``cumulative`` reaches ``budget``."""
    if budget is None:
        return None
    reached = np.flatnonzero(cumulative >= budget)
    return start + timedelta(days=int(reached[0]) + offset) if reached.size else None


def _project_scope(
    tenant_id: str,
    asset_id: str | None,
    costs: pd.DataFrame,
    budget: float | None,
    as_of: pd.Timestamp,
    forecaster: Forecaster | None,
    level: float,
) -> BudgetProjection:
    month_start = as_of.replace(day=1)
    days_in_month = calendar.monthrange(as_of.year, as_of.month)[1]
    remaining = days_in_month - as_of.day
    history = _daily_history(costs, as_of)
    month_actuals = history[history.index >= month_start].reindex(
        pd.date_range(month_start, as_of, freq="D"), fill_value=0.0
    )
    actual_cumulative = month_actuals.cumsum().to_numpy()
    month_to_date = float(actual_cumulative[-1])
    actual_breach = _first_reaching(month_start.date(), actual_cumulative, budget)

    forecast: Forecast | None = None
    if remaining == 0 or history.empty:
        model = "actuals" if not history.empty else "no_history"
        point = lower = upper = np.zeros(remaining)
    else:
        model_used = forecaster or default_budget_forecaster(len(history), level)
        forecast = model_used.forecast(history, remaining)
        model = forecast.model
        point, lower, upper = (
            np.clip(part, 0.0, None) for part in (forecast.point, forecast.lower, forecast.upper)
        )

    first_forecast_day = (as_of + pd.Timedelta(days=1)).date()
    paths = {
        name: month_to_date + np.cumsum(path)
        for name, path in (("point", point), ("lower", lower), ("upper", upper))
    }
    if actual_breach is not None:
        breach = earliest = latest = actual_breach
    else:
        breach = _first_reaching(first_forecast_day, paths["point"], budget)
        earliest = _first_reaching(first_forecast_day, paths["upper"], budget)
        latest = _first_reaching(first_forecast_day, paths["lower"], budget)
    return BudgetProjection(
        tenant_id=tenant_id,
        asset_id=asset_id,
        month=month_start.date(),
        as_of=as_of.date(),
        model=model,
        budget_usd=budget,
        month_to_date_usd=month_to_date,
        projected_month_end_usd=float(month_to_date + point.sum()),
        projected_month_end_lower_usd=float(month_to_date + lower.sum()),
        projected_month_end_upper_usd=float(month_to_date + upper.sum()),
        level=level,
        breach_date=breach,
        breach_date_earliest=earliest,
        breach_date_latest=latest,
        is_breached=actual_breach is not None,
        forecast=forecast,
    )


def project_budgets(
    costs: pd.DataFrame,
    budgets: Sequence[Budget],
    as_of: date,
    *,
    forecaster: Forecaster | None = None,
    level: float = 0.95,
) -> list[BudgetProjection]:
    """Project every tenant's month-end cost (and every budgeted application's) at ``as_of``.

    Args:
        costs: daily costs with ``tenant_id``, ``usage_date`` (a UTC day), ``cost_usd`` and, when
            an application budget is given, ``asset_id``; rows after ``as_of`` are ignored,
            several rows per scope and day are summed.
        budgets: monthly budgets; at most one per tenant and one per (tenant, application).
        as_of: the last day of actuals (a complete UTC day); the month projected is its month.
        forecaster: the daily cost forecaster (default: :func:`default_budget_forecaster`,
            chosen per scope by its history length). Its ``level`` should equal ``level``.
        level: nominal coverage of the daily forecast intervals.

    Returns:
        One projection per tenant in ``costs`` or ``budgets`` (``asset_id=None``), then one per
        application budget, sorted by tenant and application.

    Raises:
        ValueError: missing columns, duplicate budgets or non-finite costs. A forecaster error
            propagates: a scope is never reported with a made-up projection.
    """
    required = {"tenant_id", "usage_date", "cost_usd"}
    if any(budget.asset_id is not None for budget in budgets):
        required.add("asset_id")
    missing = required - set(costs.columns)
    if missing:
        raise ValueError(f"cost table lacks columns {sorted(missing)}")
    scopes = [(budget.tenant_id, budget.asset_id) for budget in budgets]
    if len(set(scopes)) != len(scopes):
        raise ValueError("more than one budget for the same tenant or application")
    amount = {(b.tenant_id, b.asset_id): b.monthly_budget_usd for b in budgets}

    cut_off = pd.Timestamp(as_of)
    frame = costs.loc[:, sorted(required)].copy()
    frame["usage_date"] = pd.to_datetime(frame["usage_date"]).dt.tz_localize(None).dt.normalize()
    frame["cost_usd"] = frame["cost_usd"].astype(float)
    frame = frame[frame["usage_date"] <= cut_off]
    if not np.isfinite(frame["cost_usd"].to_numpy()).all():
        raise ValueError("cost_usd has missing or infinite values")
    frame["tenant_id"] = frame["tenant_id"].astype(str)

    tenants = sorted(set(frame["tenant_id"]) | {tenant for tenant, _ in scopes})
    applications = sorted((t, a) for t, a in scopes if a is not None)
    by_tenant = dict(tuple(frame.groupby("tenant_id")))
    empty = frame.iloc[0:0]
    projections = []
    for tenant_id, asset_id in [(tenant, None) for tenant in tenants] + applications:
        scope_costs = by_tenant.get(tenant_id, empty)
        if asset_id is not None:
            scope_costs = scope_costs[scope_costs["asset_id"].astype(str) == asset_id]
        projections.append(
            _project_scope(
                tenant_id,
                asset_id,
                scope_costs,
                amount.get((tenant_id, asset_id)),
                cut_off,
                forecaster,
                level,
            )
        )
    return projections


def daily_cost_forecasts(
    costs: pd.DataFrame, as_of: date, horizon_days: int, *, level: float = 0.95
) -> dict[str, Forecast]:
    """Per tenant, the daily cost forecast of the ``horizon_days`` days after ``as_of``.

    The same forecaster as the projections (:func:`default_budget_forecaster`: the
    weekly-seasonal ensemble from five weeks of history, the run rate before), over a fixed
    horizon instead of the rest of the month, for the daily grain of ``analytics.forecasts``.

    Args:
        costs: daily costs with ``tenant_id``, ``usage_date``, ``cost_usd``.
        as_of: the last day of actuals.
        horizon_days: days forecast, 7 to 30.
        level: nominal coverage of the intervals.

    Raises:
        ValueError: a horizon outside 7..30 days. A forecaster error propagates.
    """
    if not 7 <= horizon_days <= 30:
        raise ValueError("the daily horizon is 7 to 30 days")
    cut_off = pd.Timestamp(as_of)
    frame = costs.loc[:, ["tenant_id", "usage_date", "cost_usd"]].copy()
    frame["usage_date"] = pd.to_datetime(frame["usage_date"]).dt.tz_localize(None).dt.normalize()
    frame = frame[frame["usage_date"] <= cut_off]
    out: dict[str, Forecast] = {}
    for tenant_id, group in frame.groupby("tenant_id", sort=True):
        history = _daily_history(group.assign(cost_usd=group["cost_usd"].astype(float)), cut_off)
        if history.empty:
            continue
        history.index.freq = "D"
        forecaster = default_budget_forecaster(len(history), level)
        out[str(tenant_id)] = forecaster.forecast(history, horizon_days)
    return out
