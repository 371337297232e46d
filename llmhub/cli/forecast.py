"""``llmhub forecast what-if``: month-end cost under a model switch, a traffic or a price change.

The usage comes from the daily cost mart (``marts.fct_llm_cost_daily``) or a CSV export of it;
the list prices from the ``model_prices`` dbt seed. The projection itself is
:func:`ml.forecast.what_if.what_if`. Results print as a table and can be written to CSV or JSON
(``--output``): a what-if is a question asked on demand, not a dataset the hub maintains, so it is
not published to the warehouse.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from llmhub.cli.output import hub_settings, out

if TYPE_CHECKING:
    import pandas as pd

forecast_app = typer.Typer(
    help="Forecast scenarios (what-if cost projections).", no_args_is_help=True
)

PRICE_SEED = Path(__file__).resolve().parents[2] / "dbt_project" / "seeds" / "model_prices.csv"
HISTORY_DAYS = 120

_USAGE_QUERY = """
select tenant_id, asset_id, provider, model, usage_date, request_count, input_tokens,
       output_tokens, cache_read_tokens, cost_usd
from marts.fct_llm_cost_daily
where usage_date > %(since)s and usage_date <= %(as_of)s
"""


def _usage_from_database(as_of: date | None) -> pd.DataFrame:
    import pandas as pd

    from llmhub.db import connect

    with connect(hub_settings()) as conn, conn.cursor() as cur:
        if as_of is None:
            cur.execute("select max(usage_date) from marts.fct_llm_cost_daily")
            newest = cur.fetchone()
            if newest is None or newest[0] is None:
                raise typer.BadParameter("marts.fct_llm_cost_daily is empty: nothing to project")
            as_of = newest[0]
        since = pd.Timestamp(as_of) - pd.Timedelta(days=HISTORY_DAYS)
        cur.execute(_USAGE_QUERY, {"since": since.date(), "as_of": as_of})
        columns = [column.name for column in cur.description or ()]
        return pd.DataFrame(cur.fetchall(), columns=columns)


def _money(point: float, lower: float, upper: float) -> str:
    return f"${point:,.2f} [{lower:,.2f}, {upper:,.2f}]"


@forecast_app.command("what-if")
def what_if_command(
    tenant: Annotated[
        str | None, typer.Option(help="Tenant whose traffic or model changes (default: all).")
    ] = None,
    app: Annotated[
        str | None, typer.Option("--app", help="Application (asset_id) within the tenant.")
    ] = None,
    switch_provider: Annotated[
        str | None, typer.Option(help="Provider of the model the application switches to.")
    ] = None,
    switch_model: Annotated[
        str | None, typer.Option(help="Model the application switches to (e.g. gpt-4o-mini).")
    ] = None,
    traffic_pct: Annotated[
        float, typer.Option(min=-100.0, help="Traffic change in percent (+20, -50).")
    ] = 0.0,
    price_provider: Annotated[
        str | None, typer.Option(help="Provider of the model whose price changes.")
    ] = None,
    price_model: Annotated[str | None, typer.Option(help="Model whose price changes.")] = None,
    price_factor: Annotated[
        float, typer.Option(min=0.0, help="Its new price relative to today's (0.8 = -20%).")
    ] = 1.0,
    as_of: Annotated[
        str | None, typer.Option(help="Last day of actuals, YYYY-MM-DD (default: newest).")
    ] = None,
    usage_csv: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="A CSV export of fct_llm_cost_daily instead of the DB.",
        ),
    ] = None,
    prices_csv: Annotated[
        Path, typer.Option(exists=True, dir_okay=False, help="List prices (the dbt seed).")
    ] = PRICE_SEED,
    output: Annotated[
        Path | None, typer.Option(help="Also write the table to this .csv or .json file.")
    ] = None,
) -> None:
    """Project month-end cost per application, today's course beside the scenario, with 95%
    intervals from the daily request forecasts and prices from the price seed."""
    import pandas as pd

    from ml.budget import default_budget_forecaster
    from ml.forecast.what_if import Scenario, prices_from_frame, what_if

    if (switch_provider is None) != (switch_model is None):
        raise typer.BadParameter("give both --switch-provider and --switch-model")
    if (price_provider is None) != (price_model is None):
        raise typer.BadParameter("give both --price-provider and --price-model")
    switch = (switch_provider, switch_model) if switch_provider and switch_model else None
    factors = (
        {(price_provider, price_model): price_factor} if price_provider and price_model else {}
    )
    if switch is None and traffic_pct == 0 and not factors:
        raise typer.BadParameter("nothing changes: give a switch, a traffic change or a price")
    parts = [f"switch to {switch[0]}/{switch[1]}"] if switch else []
    parts += [f"traffic {traffic_pct:+g}%"] if traffic_pct else []
    parts += [f"{price_provider}/{price_model} price x{price_factor:g}"] if factors else []
    scenario = Scenario(
        name=", ".join(parts),
        tenant_id=tenant,
        asset_id=app,
        switch_to=switch,
        traffic_pct=traffic_pct,
        price_factors=factors,
    )
    day = date.fromisoformat(as_of) if as_of else None
    if usage_csv is not None:
        usage = pd.read_csv(usage_csv, dtype={"tenant_id": str, "asset_id": str})
        day = day or pd.to_datetime(usage["usage_date"]).max().date()
    else:
        usage = _usage_from_database(day)
        day = day or pd.to_datetime(usage["usage_date"]).max().date()
    try:
        result = what_if(
            usage,
            prices_from_frame(pd.read_csv(prices_csv)),
            [scenario],
            day,
            default_budget_forecaster,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if result.empty:
        raise typer.BadParameter("the scenario touches no application with usage")
    table = Table(title=f"What if {scenario.name}: month-end cost (95% interval), as of {day}")
    for column in (
        "tenant",
        "application",
        "month to date",
        "today's course",
        "scenario",
        "change",
    ):
        table.add_column(column, justify="left" if column in ("tenant", "application") else "right")
    for row in result.itertuples(index=False):
        table.add_row(
            row.tenant_id,
            row.asset_id,
            f"${row.month_to_date_usd:,.2f}",
            _money(row.baseline_usd, row.baseline_lower_usd, row.baseline_upper_usd),
            _money(row.scenario_usd, row.scenario_lower_usd, row.scenario_upper_usd),
            f"{row.change_usd:+,.2f}",
        )
    out.print(table)
    if output is not None:
        if output.suffix == ".json":
            output.write_text(
                json.dumps(result.astype({"month": str}).to_dict("records"), indent=2)
            )
        else:
            result.to_csv(output, index=False)
