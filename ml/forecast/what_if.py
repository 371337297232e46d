"""What-if scenarios: month-end cost if an application switches model, traffic changes, or a
price changes, with intervals from the request-count forecasts.

Inputs are the daily cost mart (``fct_llm_cost_daily``: one row per tenant, application
(``asset_id``), provider, model and day, with ``request_count``, token counts and ``cost_usd``)
and the list prices (the ``model_prices`` dbt seed, USD per million tokens). For every usage
cell (tenant, application, provider, model) the daily request count is forecast to the end of
the month of ``as_of`` (the budget forecaster: weekly-seasonal ensemble from five weeks of
history, the run rate before), and priced per request:

* baseline: the cell's observed cost per request over the last ``recent_days`` (what was billed
  or reported, which may differ from list price);
* a model switch re-prices the same token volumes per request at the target model's list price
  (observed cost x new list cost / old list cost, or the new list cost when the old has none):
  prompts stay the same, although another model's answers may be longer or shorter;
* a traffic change scales the forecast requests (point and bounds) by ``1 + pct / 100``;
* a price change scales a (provider, model)'s cost per request by its factor.

Month-end cost = month-to-date actuals + the remaining days' forecast; the interval sums the
daily bounds (errors treated as perfectly correlated, as the budget projections do: wide,
never narrower than the truth's spread when misses persist). Prices are taken as known.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ml.forecast.base import Forecaster

PriceKey = tuple[str, str]

USAGE_COLUMNS = (
    "tenant_id",
    "asset_id",
    "provider",
    "model",
    "usage_date",
    "request_count",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cost_usd",
)
CELL = ["tenant_id", "asset_id", "provider", "model"]
RESULT_COLUMNS = (
    "scenario",
    "tenant_id",
    "asset_id",
    "month",
    "month_to_date_usd",
    "baseline_usd",
    "baseline_lower_usd",
    "baseline_upper_usd",
    "scenario_usd",
    "scenario_lower_usd",
    "scenario_upper_usd",
    "change_usd",
)


@dataclass(frozen=True)
class Price:
    """List price in USD per million tokens (``cache_read`` None: cached input pays input)."""

    input: float
    output: float
    cache_read: float | None = None

    def per_request(self, input_tokens: float, output_tokens: float, cached: float) -> float:
        """USD for one request of these mean token counts."""
        cache = self.input if self.cache_read is None else self.cache_read
        return (
            max(input_tokens - cached, 0.0) * self.input
            + cached * cache
            + output_tokens * self.output
        ) / 1e6


def prices_from_frame(frame: pd.DataFrame) -> dict[PriceKey, Price]:
    """``{(provider, model): Price}`` from the ``model_prices`` seed's columns."""
    prices = {}
    for row in frame.itertuples(index=False):
        cache = getattr(row, "cache_read_usd_per_mtok", None)
        prices[(str(row.provider), str(row.model))] = Price(
            float(row.input_usd_per_mtok),
            float(row.output_usd_per_mtok),
            None if cache is None or pd.isna(cache) else float(cache),
        )
    return prices


@dataclass(frozen=True)
class Scenario:
    """One what-if, applied to the usage cells in its scope.

    Attributes:
        name: label in the results.
        tenant_id: scope (None: every tenant) of the model switch and the traffic change.
        asset_id: scope within the tenant (None: every application).
        switch_to: ``(provider, model)`` the scoped applications move to.
        traffic_pct: change of the scoped traffic in percent (-100 stops it).
        price_factors: ``{(provider, model): factor}`` on that model's cost per request,
            wherever it is used (a provider's price change is not scoped to one tenant).
    """

    name: str
    tenant_id: str | None = None
    asset_id: str | None = None
    switch_to: PriceKey | None = None
    traffic_pct: float = 0.0
    price_factors: Mapping[PriceKey, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.traffic_pct < -100:
            raise ValueError("traffic cannot fall by more than 100%")
        if any(factor < 0 for factor in self.price_factors.values()):
            raise ValueError("a price factor must be >= 0")

    def in_scope(self, tenant_id: str, asset_id: str) -> bool:
        """Whether the switch and the traffic change apply to this application."""
        return (self.tenant_id is None or self.tenant_id == tenant_id) and (
            self.asset_id is None or self.asset_id == asset_id
        )


@dataclass(frozen=True)
class _Cell:
    key: tuple[str, str, str, str]
    month_to_date: float
    requests: np.ndarray  # (3,): remaining-month request totals: point, lower, upper
    cost_per_request: float
    tokens: tuple[float, float, float]


def _remaining_days(as_of: pd.Timestamp) -> pd.DatetimeIndex:
    last = as_of.replace(day=calendar.monthrange(as_of.year, as_of.month)[1])
    return pd.date_range(as_of + pd.Timedelta(days=1), last, freq="D")


def _cells(
    usage: pd.DataFrame,
    as_of: pd.Timestamp,
    forecaster_for: Callable[[int], Forecaster],
    recent_days: int,
) -> list[_Cell]:
    remaining = _remaining_days(as_of)
    month_start = as_of.replace(day=1)
    cells = []
    for key, rows in usage.groupby(CELL, sort=True):
        daily = rows.groupby("usage_date")[["request_count", "cost_usd"]].sum()
        index = pd.date_range(daily.index.min(), as_of, freq="D", name="usage_date")
        daily = daily.reindex(index, fill_value=0.0).astype(float)
        recent = rows[rows["usage_date"] > as_of - pd.Timedelta(days=recent_days)]
        requests_recent = float(recent["request_count"].sum())
        requests = np.zeros(3)
        if len(remaining) and requests_recent > 0:
            history = daily["request_count"]
            if len(history) >= 2:
                forecast = forecaster_for(len(history)).forecast(history, len(remaining))
                requests = np.array(
                    [
                        np.clip(part, 0, None).sum()
                        for part in (forecast.point, forecast.lower, forecast.upper)
                    ]
                )
            else:
                requests = np.full(3, history.iloc[-1] * len(remaining))
        per_request = float(recent["cost_usd"].sum()) / requests_recent if requests_recent else 0.0
        tokens = tuple(
            float(recent[column].sum()) / requests_recent if requests_recent else 0.0
            for column in ("input_tokens", "output_tokens", "cache_read_tokens")
        )
        cells.append(
            _Cell(
                key=tuple(str(part) for part in key),  # type: ignore[arg-type]
                month_to_date=float(daily.loc[month_start:, "cost_usd"].sum()),
                requests=requests,
                cost_per_request=per_request,
                tokens=tokens,  # type: ignore[arg-type]
            )
        )
    return cells


def _scenario_cost_per_request(
    cell: _Cell, scenario: Scenario, prices: Mapping[PriceKey, Price]
) -> tuple[float, PriceKey]:
    tenant_id, asset_id, provider, model = cell.key
    priced = (provider, model)
    cost = cell.cost_per_request
    if scenario.switch_to is not None and scenario.in_scope(tenant_id, asset_id):
        if scenario.switch_to not in prices:
            raise ValueError(f"no list price for {scenario.switch_to[0]}/{scenario.switch_to[1]}")
        new = prices[scenario.switch_to].per_request(*cell.tokens)
        old = prices[priced].per_request(*cell.tokens) if priced in prices else 0.0
        cost = cost * new / old if old > 0 and cost > 0 else new
        priced = scenario.switch_to
    return cost * scenario.price_factors.get(priced, 1.0), priced


def what_if(
    usage: pd.DataFrame,
    prices: Mapping[PriceKey, Price],
    scenarios: list[Scenario],
    as_of: object,
    forecaster_for: Callable[[int], Forecaster],
    recent_days: int = 28,
) -> pd.DataFrame:
    """Month-end cost per tenant and application, baseline and under each scenario.

    Args:
        usage: rows of the daily cost mart (:data:`USAGE_COLUMNS`), up to at least ``as_of``.
        prices: list prices by ``(provider, model)``.
        scenarios: the what-ifs to project.
        as_of: the last day of actuals; the month of ``as_of`` is projected.
        forecaster_for: the request-count forecaster for a history of that many days.
        recent_days: days over which cost and tokens per request are measured.

    Returns:
        One row per scenario, tenant and application (:data:`RESULT_COLUMNS`), only for the
        applications a scenario changes (all of them for a price change that touches them).

    Raises:
        ValueError: a missing column, or a switch to a model without a list price.
    """
    missing = set(USAGE_COLUMNS) - set(usage.columns)
    if missing:
        raise ValueError(f"usage lacks columns {sorted(missing)}")
    day = pd.Timestamp(as_of).normalize()
    frame = usage.assign(usage_date=pd.to_datetime(usage["usage_date"]))
    frame = frame[frame["usage_date"] <= day]
    cells = _cells(frame, day, forecaster_for, recent_days)
    month = day.replace(day=1).date()
    rows = []
    for scenario in scenarios:
        totals: dict[tuple[str, str], np.ndarray] = {}
        touched: set[tuple[str, str]] = set()
        for cell in cells:
            tenant_id, asset_id = cell.key[:2]
            cost, priced = _scenario_cost_per_request(cell, scenario, prices)
            factor = 1.0
            if scenario.in_scope(tenant_id, asset_id):
                factor = 1 + scenario.traffic_pct / 100
            changed = (
                factor != 1.0
                or priced != tuple(cell.key[2:])
                or scenario.price_factors.get(priced, 1.0) != 1.0
            )
            app = (tenant_id, asset_id)
            if changed:
                touched.add(app)
            base = cell.month_to_date + cell.requests * cell.cost_per_request
            new = cell.month_to_date + cell.requests * factor * cost
            totals[app] = totals.get(app, np.zeros(7)) + np.r_[cell.month_to_date, base, new]
        for (tenant_id, asset_id), total in sorted(totals.items()):
            if (tenant_id, asset_id) not in touched:
                continue
            rows.append((scenario.name, tenant_id, asset_id, month, *total, total[4] - total[1]))
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
