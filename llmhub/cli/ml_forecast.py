"""``llmhub ml eval-forecast``: score the forecasters on M4-format data (sMAPE, MASE, OWA).

``ml_forecast_app`` holds the command; ``llmhub/cli/__init__.py`` mounts it in the ml group.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from llmhub.cli.output import console, out

if TYPE_CHECKING:
    from ml.evaluation.m4 import M4Evaluation
    from ml.forecast.base import Forecaster

ml_forecast_app = typer.Typer()

MODEL_NAMES = ("seasonal_naive", "naive2", "sarima", "prophet", "ensemble")


def build_forecasters(
    names: list[str], season: int, weekly_season: int | None = None
) -> list[Forecaster]:
    """The named models at their published settings (the ensemble: :func:`default_ensemble`)."""
    from ml.forecast import Naive2, ProphetForecaster, Sarima, SeasonalNaive, default_ensemble

    ensemble = default_ensemble(season, weekly_season=weekly_season)
    factories = {
        "seasonal_naive": lambda: SeasonalNaive(season=season),
        "naive2": lambda: Naive2(season=season),
        "sarima": lambda: Sarima(season=season),
        "prophet": lambda: ProphetForecaster(),
        "ensemble": lambda: ensemble,
    }
    unknown = sorted(set(names) - set(factories))
    if unknown:
        raise typer.BadParameter(f"unknown model(s) {unknown}; choose from {list(MODEL_NAMES)}")
    return [factories[name]() for name in names]


def _table(evaluation: M4Evaluation) -> Table:
    table = Table(
        title=f"{evaluation.n_series} series, horizon {evaluation.horizon}, "
        f"season {evaluation.season} ({evaluation.wall_seconds:.0f} s)"
    )
    for column in ("model", "sMAPE", "MASE", "OWA", "95% coverage", "MSIS", "model s"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for score in evaluation.scores:
        table.add_row(
            score.model,
            f"{score.smape:.3f}",
            f"{score.mase:.3f}",
            f"{score.owa:.3f}",
            f"{score.coverage:.3f}",
            f"{score.msis:.3f}",
            f"{score.seconds:.1f}",
        )
    return table


@ml_forecast_app.command("eval-forecast")
def eval_forecast(
    train: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="M4 train CSV.")],
    test: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="M4 test CSV.")],
    horizon: Annotated[int, typer.Option(min=1, help="Steps to forecast (48 for Hourly).")],
    season: Annotated[int, typer.Option(min=1, help="Seasonal period (24 for Hourly).")],
    models: Annotated[
        str, typer.Option(help=f"Comma-separated models from {', '.join(MODEL_NAMES)}.")
    ] = ",".join(MODEL_NAMES),
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N series.")] = None,
    jobs: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 2,
    freq: Annotated[
        str | None, typer.Option(help="Pandas frequency of the series (default: from season).")
    ] = None,
    weekly_season: Annotated[
        int,
        typer.Option(
            min=0,
            help="Second period the ensemble's adaptive naive member may pick (the published "
            "hourly forecaster: 168, a week); 0 = the plain seasonal naive.",
        ),
    ] = 168,
    as_json: Annotated[bool, typer.Option("--json", help="Print the scores as JSON.")] = False,
) -> None:
    """Score forecasters on M4-format data: sMAPE, MASE and OWA per model.

    Every series of the train file is forecast and scored against the test file; OWA is relative
    to Naive2 (always run). 95% interval coverage and MSIS are reported too.
    """
    from ml.evaluation.m4 import evaluate_m4, frequency_for_season, load_m4

    forecasters = build_forecasters(
        [name.strip() for name in models.split(",") if name.strip()], season, weekly_season or None
    )
    dataset = load_m4(train, test, freq=freq or frequency_for_season(season))
    if limit is not None:
        dataset = dataset[:limit]
    with Progress(
        TextColumn("forecasting"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not sys.stderr.isatty(),
    ) as bar:
        task = bar.add_task("series", total=len(dataset))
        evaluation = evaluate_m4(
            dataset,
            forecasters,
            horizon,
            season,
            n_jobs=jobs,
            progress=lambda done: bar.advance(task, done),
        )
    if as_json:
        summary = {"train": str(train), "test": str(test), **evaluation.to_dict()}
        out.print_json(json.dumps(summary))
    else:
        out.print(_table(evaluation))
