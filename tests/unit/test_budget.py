"""Month-end cost projection and budget breach dates (ml.budget)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from ml.budget import (
    MIN_DAYS_FOR_SEASONAL_MODELS,
    Budget,
    BudgetProjection,
    budgets_from_frame,
    daily_cost_forecasts,
    project_budgets,
)
from ml.forecast import RunRate, SeasonalNaive


def _steady(
    start: str, end: str, daily_usd: float, tenant: str = "t1", asset: str = "app-1"
) -> pd.DataFrame:
    days = pd.date_range(start, end, freq="D")
    return pd.DataFrame(
        {"tenant_id": tenant, "asset_id": asset, "usage_date": days.date, "cost_usd": daily_usd}
    )


def _one(projections: list[BudgetProjection], tenant: str, asset: str | None = None):
    (found,) = [p for p in projections if p.tenant_id == tenant and p.asset_id == asset]
    return found


def test_steady_100_a_day_breaches_a_2000_budget_on_day_20() -> None:
    costs = _steady("2025-06-01", "2025-06-10", 100.0)
    projection = _one(project_budgets(costs, [Budget("t1", 2000.0)], date(2025, 6, 10)), "t1")

    assert projection.month == date(2025, 6, 1)
    assert projection.month_to_date_usd == pytest.approx(1000.0)
    assert projection.projected_month_end_usd == pytest.approx(3000.0)
    assert projection.breach_date == date(2025, 6, 20)
    assert projection.breach_date_earliest == projection.breach_date_latest == date(2025, 6, 20)
    assert projection.status == "projected_breach"
    assert not projection.is_breached


def test_breach_already_in_the_actuals_is_dated_from_the_actuals() -> None:
    costs = _steady("2025-06-01", "2025-06-25", 100.0)
    projection = _one(project_budgets(costs, [Budget("t1", 2000.0)], date(2025, 6, 25)), "t1")

    assert projection.is_breached
    assert projection.status == "breached"
    assert projection.breach_date == date(2025, 6, 20)
    assert projection.month_to_date_usd == pytest.approx(2500.0)
    assert projection.projected_month_end_usd == pytest.approx(3000.0)


def test_a_budget_above_the_projection_is_ok() -> None:
    costs = _steady("2025-06-01", "2025-06-10", 100.0)
    projection = _one(project_budgets(costs, [Budget("t1", 5000.0)], date(2025, 6, 10)), "t1")

    assert projection.breach_date is None
    assert projection.status == "ok"


def test_history_from_earlier_months_feeds_the_forecast() -> None:
    # May at $50/day, June so far at $100/day: 41 days of history, so the seasonal ensemble
    # forecasts, and it follows the June level rather than the two-month average.
    costs = pd.concat(
        [_steady("2025-05-01", "2025-05-31", 50.0), _steady("2025-06-01", "2025-06-10", 100.0)]
    )
    projection = _one(project_budgets(costs, [], date(2025, 6, 10)), "t1")

    assert projection.model == "ensemble"
    assert projection.month_to_date_usd == pytest.approx(1000.0)
    assert projection.budget_usd is None
    assert projection.status == "no_budget"
    assert projection.projected_month_end_usd == pytest.approx(3000.0, rel=0.05)


def test_interval_brackets_the_projection_and_never_drops_below_actuals() -> None:
    rng = np.random.default_rng(7)
    costs = _steady("2025-06-01", "2025-06-12", 0.0)
    costs["cost_usd"] = rng.gamma(2.0, 50.0, len(costs))
    projection = _one(project_budgets(costs, [Budget("t1", 3000.0)], date(2025, 6, 12)), "t1")

    assert (
        projection.month_to_date_usd
        <= projection.projected_month_end_lower_usd
        <= projection.projected_month_end_usd
        <= projection.projected_month_end_upper_usd
    )
    assert projection.projected_month_end_upper_usd > projection.projected_month_end_lower_usd
    if projection.breach_date is not None:
        assert projection.breach_date_earliest <= projection.breach_date
    assert projection.forecast is not None
    assert projection.forecast.horizon == 30 - 12


def test_application_budget_counts_only_that_application() -> None:
    costs = pd.concat(
        [
            _steady("2025-06-01", "2025-06-10", 60.0, asset="chatbot"),
            _steady("2025-06-01", "2025-06-10", 40.0, asset="search"),
        ]
    )
    budgets = [Budget("t1", 2000.0), Budget("t1", 600.0, asset_id="search")]
    projections = project_budgets(costs, budgets, date(2025, 6, 10))

    assert [(p.tenant_id, p.asset_id) for p in projections] == [("t1", None), ("t1", "search")]
    tenant, search = projections
    assert tenant.projected_month_end_usd == pytest.approx(3000.0)
    assert tenant.breach_date == date(2025, 6, 20)
    assert search.month_to_date_usd == pytest.approx(400.0)
    assert search.projected_month_end_usd == pytest.approx(1200.0)
    assert search.breach_date == date(2025, 6, 15)


def test_days_without_cost_rows_count_as_zero() -> None:
    costs = _steady("2025-06-01", "2025-06-10", 100.0)
    costs = costs[pd.to_datetime(costs["usage_date"]).dt.day % 2 == 1]
    projection = _one(
        project_budgets(costs, [], date(2025, 6, 10), forecaster=RunRate(window=4)), "t1"
    )

    assert projection.month_to_date_usd == pytest.approx(500.0)
    assert projection.projected_month_end_usd == pytest.approx(500.0 + 20 * 50.0)


def test_costs_after_as_of_are_ignored() -> None:
    costs = _steady("2025-06-01", "2025-06-30", 100.0)
    costs.loc[costs["usage_date"] > date(2025, 6, 10), "cost_usd"] = 10_000.0
    projection = _one(project_budgets(costs, [], date(2025, 6, 10)), "t1")

    assert projection.projected_month_end_usd == pytest.approx(3000.0)


def test_last_day_of_month_projects_the_actuals() -> None:
    costs = _steady("2025-06-01", "2025-06-30", 100.0)
    projection = _one(project_budgets(costs, [Budget("t1", 10_000.0)], date(2025, 6, 30)), "t1")

    assert projection.model == "actuals"
    assert projection.forecast is None
    assert (
        projection.projected_month_end_lower_usd
        == projection.projected_month_end_usd
        == projection.projected_month_end_upper_usd
        == pytest.approx(3000.0)
    )


def test_budgeted_tenant_without_costs_projects_zero() -> None:
    costs = _steady("2025-06-01", "2025-06-10", 100.0)
    projections = project_budgets(costs, [Budget("t9", 500.0)], date(2025, 6, 10))

    quiet = _one(projections, "t9")
    assert quiet.model == "no_history"
    assert quiet.projected_month_end_usd == 0.0
    assert quiet.status == "ok"


def test_multiple_rows_per_day_are_summed_and_timestamps_accepted() -> None:
    costs = pd.concat(
        [_steady("2025-06-01", "2025-06-10", 30.0), _steady("2025-06-01", "2025-06-10", 70.0)]
    )
    costs["usage_date"] = pd.to_datetime(costs["usage_date"]).dt.tz_localize("UTC")
    projection = _one(project_budgets(costs, [Budget("t1", 2000.0)], date(2025, 6, 10)), "t1")

    assert projection.breach_date == date(2025, 6, 20)


def test_seasonal_models_take_over_with_enough_history() -> None:
    days = pd.date_range("2025-04-01", periods=MIN_DAYS_FOR_SEASONAL_MODELS + 30, freq="D")
    weekday = (days.dayofweek < 5).astype(float)
    costs = pd.DataFrame(
        {"tenant_id": "t1", "usage_date": days, "cost_usd": 20.0 + 100.0 * weekday}
    )
    as_of = days[-1].date()
    projection = _one(project_budgets(costs, [], as_of, forecaster=SeasonalNaive(season=7)), "t1")

    remaining = pd.date_range(as_of, periods=31, freq="D")[1:]
    remaining = remaining[remaining.month == days[-1].month]
    expected = costs.loc[costs["usage_date"].dt.month == days[-1].month, "cost_usd"].sum()
    expected += (20.0 + 100.0 * (remaining.dayofweek < 5)).sum()
    assert projection.projected_month_end_usd == pytest.approx(expected)


def test_budgets_from_frame_reads_tenant_and_application_rows() -> None:
    frame = pd.DataFrame(
        {
            "tenant_id": ["t1", "t1"],
            "asset_id": [None, "search"],
            "monthly_budget_usd": [2000, 600.5],
        }
    )
    assert budgets_from_frame(frame) == [
        Budget("t1", 2000.0),
        Budget("t1", 600.5, asset_id="search"),
    ]


@pytest.mark.parametrize("amount", [0.0, -5.0, float("nan")])
def test_budget_must_be_positive(amount: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        Budget("t1", amount)


def test_duplicate_budgets_are_rejected() -> None:
    costs = _steady("2025-06-01", "2025-06-10", 100.0)
    with pytest.raises(ValueError, match="more than one budget"):
        project_budgets(costs, [Budget("t1", 1.0), Budget("t1", 2.0)], date(2025, 6, 10))


def test_missing_columns_are_reported() -> None:
    with pytest.raises(ValueError, match="cost_usd"):
        project_budgets(pd.DataFrame({"tenant_id": [], "usage_date": []}), [], date(2025, 6, 1))


def test_daily_cost_forecasts_cover_the_horizon_per_tenant() -> None:
    days = pd.date_range("2026-09-01", "2026-11-20", freq="D")
    costs = pd.DataFrame(
        {
            "tenant_id": ["acme"] * len(days) + ["globex"] * 10,
            "usage_date": list(days) + list(days[-10:]),
            "cost_usd": list(
                10.0 + (days.dayofweek >= 5) + np.random.default_rng(0).normal(0, 0.5, len(days))
            )
            + [3.0] * 10,
        }
    )
    forecasts = daily_cost_forecasts(costs, date(2026, 11, 20), 14)
    assert sorted(forecasts) == ["acme", "globex"]
    assert all(len(f.point) == 14 for f in forecasts.values())
    assert forecasts["acme"].index[0] == pd.Timestamp("2026-11-21")
    # Ten days of history: the run rate, not the seasonal ensemble.
    assert forecasts["globex"].model == "run_rate"
    with pytest.raises(ValueError):
        daily_cost_forecasts(costs, date(2026, 11, 20), 3)
