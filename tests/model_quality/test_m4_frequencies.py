"""``eval-forecast`` on every M4 frequency, with generated series of varied lengths.

Regressions: SARIMA with season 1 raised ("Seasonal periodicity must be greater than 1"); a long
weekly series dated from 2000 at M4's season 1 ran past pandas' timestamp range; one 80-week
series under a 52-week season aborted the whole evaluation.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from llmhub.cli.ml_forecast import ml_forecast_app
from ml.evaluation.m4 import M4Series, evaluate_m4, load_m4
from ml.forecast import Sarima, SeasonalNaive, default_ensemble
from ml.forecast.base import Forecast
from ml.forecast.frequency import FREQUENCIES

# (frequency, season of the generated cycle, train lengths: short, typical); the long ones
# (835 years, 2597 weeks) are dated by the load tests below.
CASES = [
    ("yearly", 1, (13, 40)),
    ("quarterly", 4, (16, 60)),
    ("monthly", 12, (42, 120)),
    ("weekly", 52, (80, 300)),
    ("daily", 7, (20, 120)),
]


def _write_m4(path: Path, rows: dict[str, np.ndarray]) -> None:
    width = max(values.size for values in rows.values())
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL)
        writer.writerow([f"V{i}" for i in range(1, width + 2)])
        for series_id, values in rows.items():
            cells = [f"{value:.3f}" for value in values]
            writer.writerow([series_id, *cells, *[""] * (width - len(cells))])


def _generate(tmp_path: Path, name: str, season: int, lengths: tuple[int, ...]) -> Path:
    spec = FREQUENCIES[name]
    rng = np.random.default_rng(len(name))
    train, test = {}, {}
    for number, length in enumerate(lengths, start=1):
        t = np.arange(length + spec.horizon)
        cycle = 15.0 * np.sin(2 * np.pi * t / season) if season > 1 else 0.0
        values = 500.0 + 0.3 * t + cycle + rng.normal(0.0, 4.0, t.size)
        series_id = f"{name[0].upper()}{number}"
        train[series_id], test[series_id] = values[:length], values[length:]
    _write_m4(tmp_path / f"{name.capitalize()}-train.csv", train)
    _write_m4(tmp_path / f"{name.capitalize()}-test.csv", test)
    return tmp_path / f"{name.capitalize()}-train.csv"


@pytest.mark.parametrize(("name", "season", "lengths"), CASES, ids=[case[0] for case in CASES])
def test_eval_forecast_runs_on_every_m4_frequency(
    tmp_path: Path, name: str, season: int, lengths: tuple[int, ...]
) -> None:
    train = _generate(tmp_path, name, season, lengths)
    root = typer.Typer()
    root.add_typer(ml_forecast_app, name="ml")
    result = CliRunner().invoke(
        root,
        [
            "ml",
            "eval-forecast",
            "--train",
            str(train),
            "--test",
            str(train.with_name(train.name.replace("train", "test"))),
            "--jobs",
            "1",
            "--json",
        ],
    )

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    spec = FREQUENCIES[name]
    assert summary["frequency"] == name
    assert summary["n_series"] == len(lengths)
    assert summary["horizon"] == spec.horizon
    assert summary["failures"] == []
    for score in summary["models"].values():
        assert np.isfinite([score["smape"], score["mase"], score["coverage"]]).all()
    # The median ensemble of trend-following members beats Naive2 on trending series.
    assert summary["models"]["ensemble"]["owa"] < 1.0


def test_long_yearly_series_keep_their_newest_points_inside_pandas_range(tmp_path: Path) -> None:
    train = _generate(tmp_path, "yearly", 1, (835,))
    [series] = load_m4(train, train.with_name("Yearly-test.csv"), freq="YS")
    assert series.dropped > 0
    assert len(series.train) + series.dropped == 835
    assert series.train.index[-1] <= pd.Timestamp("2020-01-01")


def test_weekly_series_are_dated_from_a_fixed_end_not_past_the_year_4000(tmp_path: Path) -> None:
    train = _generate(tmp_path, "weekly", 52, (2597,))
    [series] = load_m4(train, train.with_name("Weekly-test.csv"), freq="W-MON")
    assert series.dropped == 0
    assert series.train.index[-1].year == 2019


def test_sarima_with_season_one_fits_a_non_seasonal_arima() -> None:
    # Sarima(season=1) raised statsmodels' "Seasonal periodicity must be greater than 1".
    y = pd.Series(100.0 + np.arange(30.0), index=pd.date_range("2000", periods=30, freq="YS"))
    forecast = Sarima(season=1).forecast(y, 6)
    assert forecast.fitted_by == "arima"
    assert forecast.point[-1] > y.iloc[-1]


def test_short_series_falls_back_to_simpler_members() -> None:
    # 80 weeks under a 52-week season: SARIMA needs 159 points, the ensemble still forecasts.
    rng = np.random.default_rng(3)
    y = pd.Series(
        200.0 + rng.normal(0.0, 5.0, 80), index=pd.date_range("2020-01-06", periods=80, freq="W")
    )
    naive, sarima, _prophet = default_ensemble(52).members
    assert sarima.forecast(y, 13).fitted_by == "arima"
    assert naive.forecast(y[:40], 13).fitted_by == "naive"
    forecast = default_ensemble(52).forecast(y[:10], 13)
    assert forecast.horizon == 13


class _Broken:
    name = "broken"

    def forecast(self, y: pd.Series, horizon: int) -> Forecast:
        if len(y) < 50:
            raise RuntimeError("cannot fit")
        return SeasonalNaive(season=1).forecast(y, horizon)


def test_one_failing_series_is_recorded_not_fatal() -> None:
    # One short series aborted the whole M4 evaluation after minutes of work.
    index = pd.date_range("2000-01-03", periods=60, freq="D")
    dataset = [
        M4Series("long", pd.Series(np.arange(60.0) + 1, index=index), np.arange(60.0, 74.0) + 1),
        M4Series("short", pd.Series(np.arange(20.0) + 1, index=index[:20]), np.arange(14.0) + 21),
    ]
    evaluation = evaluate_m4(dataset, [_Broken()], horizon=14, season=1)

    assert evaluation.score("broken").failures == 1
    assert [failure["series_id"] for failure in evaluation.failures] == ["short"]
    assert "cannot fit" in evaluation.failures[0]["error"]
    assert len(evaluation.per_series) == 4
