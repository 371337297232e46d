"""M4 Hourly evaluation: the seasonal naive reproduces its published score; the harness and CLI.

Needs the M4 Hourly files in ``$LLMHUB_EVAL_DATA/m4`` (default ``<repo>/../shared/data/m4``);
skips when they are absent.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmhub.cli import app
from ml.evaluation.m4 import M4Series, evaluate_m4, load_m4, read_m4_csv
from ml.forecast import Naive2, Sarima, SeasonalNaive

pytestmark = pytest.mark.shared_data

# Published M4 Hourly figures (M4 "Evaluation and Ranks"): 414 series, horizon 48, m = 24.
SNAIVE_SMAPE, SNAIVE_MASE = 13.912, 1.193
NAIVE2_SMAPE, NAIVE2_MASE = 18.383, 2.395


def _m4_file(name: str) -> Path:
    configured = os.environ.get("LLMHUB_EVAL_DATA")
    root = (
        Path(configured) if configured else Path(__file__).resolve().parents[2] / "../shared/data"
    )
    path = (root / "m4" / name).resolve()
    if not path.is_file():
        pytest.skip(f"M4 data {path} is absent (set LLMHUB_EVAL_DATA to the shared data)")
    return path


@pytest.fixture(scope="module")
def hourly() -> list[M4Series]:
    return load_m4(_m4_file("Hourly-train.csv"), _m4_file("Hourly-test.csv"), freq="h")


def test_hourly_files_load_as_414_series_of_48_test_values(hourly: list[M4Series]) -> None:
    assert len(hourly) == 414
    assert {series.test.size for series in hourly} == {48}
    assert {len(series.train) for series in hourly} == {700, 960}
    assert hourly[0].series_id == "H1"
    assert hourly[0].train.iloc[:3].tolist() == [605.0, 586.0, 586.0]


def test_seasonal_naive_reproduces_published_m4_hourly_scores(hourly: list[M4Series]) -> None:
    evaluation = evaluate_m4(hourly, [SeasonalNaive(season=24)], horizon=48, season=24)

    snaive = evaluation.score("seasonal_naive")
    assert round(snaive.smape, 3) == SNAIVE_SMAPE
    assert round(snaive.mase, 3) == SNAIVE_MASE
    assert round(evaluation.naive2_smape, 3) == NAIVE2_SMAPE
    assert round(evaluation.naive2_mase, 3) == NAIVE2_MASE
    assert evaluation.score("naive2").owa == pytest.approx(1.0)
    assert snaive.owa == pytest.approx(
        0.5 * (snaive.smape / 18.383 + snaive.mase / 2.395), abs=1e-3
    )


def test_subset_evaluation_scores_a_fast_model(hourly: list[M4Series]) -> None:
    subset = hourly[::41][:10]
    evaluation = evaluate_m4(
        subset, [SeasonalNaive(season=24), Sarima(season=24)], horizon=48, season=24
    )

    assert evaluation.n_series == 10
    assert [score.model for score in evaluation.scores] == ["seasonal_naive", "sarima", "naive2"]
    assert len(evaluation.per_series) == 30
    sarima = evaluation.score("sarima")
    assert all(math.isfinite(value) for value in (sarima.smape, sarima.mase, sarima.msis))
    assert sarima.owa < 1.0
    assert 0.8 <= sarima.coverage <= 1.0
    assert sarima.seconds > 0


def test_a_model_failure_is_recorded_and_counted(hourly: list[M4Series]) -> None:
    # SARIMA with 30 seasonal differences cannot fit 700 points: the failure is reported, and
    # the series is scored with Naive2's forecast for it (the evaluation goes on).
    evaluation = evaluate_m4(hourly[:1], [Sarima(season=24, seasonal_order=(0, 30, 1))], 48, 24)
    assert evaluation.score("sarima").failures == 1
    assert evaluation.failures[0]["series_id"] == "H1"
    assert evaluation.score("sarima").smape == evaluation.naive2_smape


def test_evaluation_refuses_two_models_under_one_name(hourly: list[M4Series]) -> None:
    with pytest.raises(ValueError, match="name"):
        evaluate_m4(hourly[:1], [SeasonalNaive(24), SeasonalNaive(24, level=0.8)], 48, 24)


def test_evaluation_refuses_a_horizon_beyond_the_test_data(hourly: list[M4Series]) -> None:
    with pytest.raises(ValueError, match="test values"):
        evaluate_m4(hourly[:1], [Naive2(season=24)], horizon=49, season=24)


def test_m4_reader_drops_trailing_empty_cells(tmp_path: Path) -> None:
    path = tmp_path / "toy.csv"
    path.write_text('"V1","V2","V3","V4"\n"A","1","2","3"\n"B","4","",""\n')
    series = read_m4_csv(path)
    assert series["A"].tolist() == [1.0, 2.0, 3.0]
    assert series["B"].tolist() == [4.0]


def test_cli_prints_json_scores() -> None:
    result = CliRunner().invoke(
        app,
        [
            "ml",
            "eval-forecast",
            "--train",
            str(_m4_file("Hourly-train.csv")),
            "--test",
            str(_m4_file("Hourly-test.csv")),
            "--horizon",
            "48",
            "--season",
            "24",
            "--models",
            "seasonal_naive,naive2",
            "--limit",
            "20",
            "--jobs",
            "1",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["n_series"] == 20
    assert set(summary["models"]) == {"seasonal_naive", "naive2"}
    assert summary["models"]["naive2"]["owa"] == pytest.approx(1.0)
