"""What-if month-end cost projections: model switch, traffic change, price change, scope."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from llmhub.cli.forecast import PRICE_SEED, forecast_app
from ml.forecast import RunRate
from ml.forecast.what_if import Price, Scenario, prices_from_frame, what_if

PRICES = {
    ("openai", "gpt-4o"): Price(2.5, 10.0, 1.25),
    ("openai", "gpt-4o-mini"): Price(0.15, 0.6, 0.075),
}


def _usage(days: int = 40) -> pd.DataFrame:
    """Two applications of one tenant on gpt-4o, 1000 requests a day, 1000 in / 200 out tokens;
    the ids contain separators (a "/" in the tenant, one in the application)."""
    rows = []
    for day in pd.date_range("2026-10-22", periods=days, freq="D"):
        for tenant, app in (("acme/eu", "chat"), ("acme", "eu/chat")):
            rows.append(
                {
                    "tenant_id": tenant,
                    "asset_id": app,
                    "provider": "openai",
                    "model": "gpt-4o",
                    "usage_date": day,
                    "request_count": 1000,
                    "input_tokens": 1_000_000,
                    "output_tokens": 200_000,
                    "cache_read_tokens": 0,
                    "cost_usd": 4.5,  # list price: 2.5 + 2.0
                }
            )
    return pd.DataFrame(rows)


def _run_rate(_: int) -> RunRate:
    return RunRate(window=7)


def test_switch_to_a_cheaper_model_reprices_the_remaining_days() -> None:
    as_of = pd.Timestamp("2026-11-20")
    scenario = Scenario(
        "mini", tenant_id="acme/eu", asset_id="chat", switch_to=("openai", "gpt-4o-mini")
    )
    result = what_if(_usage(), PRICES, [scenario], as_of, _run_rate)

    # Only the switched application is reported; "acme" + "eu/chat" is another application.
    assert result[["tenant_id", "asset_id"]].values.tolist() == [["acme/eu", "chat"]]
    row = result.iloc[0]
    assert row.month_to_date_usd == pytest.approx(20 * 4.5)
    assert row.baseline_usd == pytest.approx(30 * 4.5)
    mini = (1000 * 0.15 + 200 * 0.6) / 1e6  # USD per request at the mini's list price
    assert row.scenario_usd == pytest.approx(20 * 4.5 + 10 * 1000 * mini)
    assert row.change_usd < 0


def test_traffic_change_scales_the_forecast_and_its_interval() -> None:
    usage = _usage()
    rng = np.random.default_rng(0)
    usage["request_count"] = rng.poisson(1000, len(usage))
    usage["cost_usd"] = usage["request_count"] * 0.0045
    result = what_if(
        usage, PRICES, [Scenario("+50%", tenant_id="acme", traffic_pct=50)], "2026-11-20", _run_rate
    )

    row = result.iloc[0]
    assert row.tenant_id == "acme"
    remaining = (
        np.array([row.baseline_lower_usd, row.baseline_usd, row.baseline_upper_usd])
        - row.month_to_date_usd
    )
    scenario = (
        np.array([row.scenario_lower_usd, row.scenario_usd, row.scenario_upper_usd])
        - row.month_to_date_usd
    )
    assert scenario == pytest.approx(1.5 * remaining)
    assert row.baseline_lower_usd < row.baseline_usd < row.baseline_upper_usd


def test_price_change_applies_to_every_user_of_the_model() -> None:
    factors = {("openai", "gpt-4o"): 0.5}
    result = what_if(
        _usage(), PRICES, [Scenario("half", price_factors=factors)], "2026-11-20", _run_rate
    )
    assert len(result) == 2
    assert result["scenario_usd"].to_numpy() == pytest.approx(20 * 4.5 + 10 * 4.5 * 0.5)


def test_switch_to_an_unpriced_model_is_refused() -> None:
    with pytest.raises(ValueError, match="no list price"):
        what_if(
            _usage(),
            PRICES,
            [Scenario("x", switch_to=("acme", "own-model"))],
            "2026-11-20",
            _run_rate,
        )


def test_price_seed_parses() -> None:
    prices = prices_from_frame(pd.read_csv(PRICE_SEED))
    assert prices[("openai", "gpt-4o")].input == 2.5


def test_cli_projects_from_a_usage_export(tmp_path: Path) -> None:
    usage = tmp_path / "usage.csv"
    _usage().to_csv(usage, index=False)
    output = tmp_path / "what_if.csv"
    root = typer.Typer()
    root.add_typer(forecast_app, name="forecast")
    result = CliRunner().invoke(
        root,
        [
            "forecast",
            "what-if",
            "--tenant",
            "acme/eu",
            "--app",
            "chat",
            "--switch-provider",
            "openai",
            "--switch-model",
            "gpt-4o-mini",
            "--usage-csv",
            str(usage),
            "--as-of",
            "2026-11-20",
            "--output",
            str(output),
        ],
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(output)
    assert table["scenario_usd"].iloc[0] < table["baseline_usd"].iloc[0]
