"""``llmhub ml eval-forecast``: score the forecasters on M4-format data (sMAPE, MASE, OWA).

``ml_forecast_app`` holds the commands (``eval-forecast``, ``eval-daily``);
``llmhub/cli/__init__.py`` mounts it in the ml group.
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
    names: list[str],
    season: int,
    weekly_season: int | None = None,
    *,
    score_season: int | None = None,
    seasonal_test: bool = False,
) -> list[Forecaster]:
    """The named models at their published settings: the ensemble is :func:`default_ensemble`
    and the single models are its members (with their fallbacks for short histories).

    Args:
        names: models to build, from :data:`MODEL_NAMES`.
        season: the period the models fit (1: none).
        weekly_season: the adaptive naive's second period (hourly: 168).
        score_season: Naive2's period (M4's; default ``season``).
        seasonal_test: SARIMA keeps its season only where the series shows it.
    """
    from ml.forecast import Naive2, SeasonalNaive, default_ensemble
    from ml.forecast.fallback import Fallback

    ensemble = default_ensemble(season, weekly_season=weekly_season, seasonal_test=seasonal_test)
    naive, sarima, prophet = ensemble.members
    if naive.name != "seasonal_naive" and season > 1:
        # The ensemble's naive member is the adaptive daily/weekly one: the plain seasonal
        # naive (the M4 benchmark) is its own model, with the same short-history fallback.
        naive = Fallback(
            (SeasonalNaive(season=season), SeasonalNaive(season=1)), label="seasonal_naive"
        )
    factories = {
        "seasonal_naive": lambda: naive,
        "naive2": lambda: Naive2(season=score_season or season),
        "sarima": lambda: sarima,
        "prophet": lambda: prophet,
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
    columns = ("model", "sMAPE", "MASE", "OWA", "95% coverage", "MSIS", "fallbacks", "failed")
    for column in (*columns, "model s"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for score in evaluation.scores:
        table.add_row(
            score.model,
            f"{score.smape:.3f}",
            f"{score.mase:.3f}",
            f"{score.owa:.3f}",
            f"{score.coverage:.3f}",
            f"{score.msis:.3f}",
            str(score.fallbacks),
            str(score.failures),
            f"{score.seconds:.1f}",
        )
    return table


@ml_forecast_app.command("eval-forecast")
def eval_forecast(
    train: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="M4 train CSV.")],
    test: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="M4 test CSV.")],
    horizon: Annotated[
        int | None, typer.Option(min=1, help="Steps to forecast (default: M4's for the frequency).")
    ] = None,
    season: Annotated[
        int | None,
        typer.Option(
            min=1, help="Seasonal period of the scores and Naive2 (default: M4's; 24 for hourly)."
        ),
    ] = None,
    frequency: Annotated[
        str | None,
        typer.Option(
            help="yearly, quarterly, monthly, weekly, daily or hourly (default: from the train "
            "file's name, e.g. Weekly-train.csv)."
        ),
    ] = None,
    model_season: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Period the models fit (default: the frequency's: 52 weekly, 7 daily, 12 "
            "monthly, 4 quarterly, 1 yearly, 24 hourly); tested per series off hourly data.",
        ),
    ] = None,
    models: Annotated[
        str, typer.Option(help=f"Comma-separated models from {', '.join(MODEL_NAMES)}.")
    ] = ",".join(MODEL_NAMES),
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N series.")] = None,
    jobs: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 2,
    freq: Annotated[
        str | None, typer.Option(help="Pandas frequency of the series (default: the frequency's).")
    ] = None,
    weekly_season: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Second period the ensemble's adaptive naive member may pick (hourly default "
            "168, a week; elsewhere none); 0 = the plain seasonal naive.",
        ),
    ] = None,
    max_failed: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Exit 1 after reporting when a model failed on more than this share of series.",
        ),
    ] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the scores as JSON.")] = False,
) -> None:
    """Score forecasters on M4-format data of any frequency: sMAPE, MASE and OWA per model.

    Every series of the train file is forecast and scored against the test file; OWA is relative
    to Naive2 (always run). 95% interval coverage and MSIS are reported too. A model that fails
    on one series is recorded and scored there with Naive2's forecast; the run goes on and
    reports the failures (exit 1 when a model failed on more than ``--max-failed`` of them).
    """
    from ml.evaluation.m4 import evaluate_m4, load_m4
    from ml.forecast.frequency import frequency_from_path, frequency_named

    spec = frequency_named(frequency) if frequency else frequency_from_path(train)
    if spec is None:
        raise typer.BadParameter(
            f"cannot tell the frequency from {train.name}: pass --frequency",
            param_hint="--frequency",
        )
    score_season = season or spec.score_season
    fit_season = model_season or spec.model_season
    hourly = spec.name == "hourly"
    if weekly_season is None:
        weekly_season = 7 * fit_season if hourly else 0
    forecasters = build_forecasters(
        [name.strip() for name in models.split(",") if name.strip()],
        fit_season,
        weekly_season or None,
        score_season=score_season,
        seasonal_test=not hourly,
    )
    dataset = load_m4(train, test, freq=freq or spec.pandas_freq)
    if limit is not None:
        dataset = dataset[:limit]
    steps = horizon or spec.horizon
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
            steps,
            score_season,
            n_jobs=jobs,
            progress=lambda done: bar.advance(task, done),
        )
    if as_json:
        summary = {
            "train": str(train),
            "test": str(test),
            "frequency": spec.name,
            "model_season": fit_season,
            **evaluation.to_dict(),
        }
        out.print_json(json.dumps(summary))
    else:
        out.print(_table(evaluation))
        for failure in evaluation.failures[:20]:
            console.print(
                f"[yellow]{failure['model']} failed on {failure['series_id']}: "
                f"{failure['error']}[/yellow]"
            )
    worst = max(score.failures for score in evaluation.scores) / evaluation.n_series
    if worst > max_failed:
        console.print(
            f"[red]a model failed on {worst:.1%} of series (allowed {max_failed:.1%})[/red]"
        )
        raise typer.Exit(1)


@ml_forecast_app.command("eval-daily")
def eval_daily(
    csv: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="A ds,y CSV of real daily data (default: generated hub-like applications).",
        ),
    ] = None,
    log_values: Annotated[
        bool, typer.Option(help="The CSV holds log values (Prophet's Peyton Manning example).")
    ] = False,
    apps: Annotated[int, typer.Option(min=1, help="Generated applications (2 series each).")] = 6,
    days: Annotated[int, typer.Option(min=70, help="Days of generated history.")] = 180,
    seed: Annotated[int, typer.Option(help="Seed of the generated applications.")] = 0,
    horizons: Annotated[str, typer.Option(help="Comma-separated days ahead.")] = "7,14,30",
    origins: Annotated[int, typer.Option(min=1, help="Forecast origins per series.")] = 3,
    lstm: Annotated[bool, typer.Option(help="Evaluate the LSTM as an ensemble member.")] = True,
    jobs: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="Print the scores as JSON.")] = False,
) -> None:
    """Backtest daily forecasts (request rates and cost) 7-30 days ahead: sMAPE, MASE and the
    empirical coverage of the 95% interval per horizon; whether the LSTM earns its place."""
    from ml.evaluation.daily import evaluate_daily, hub_like_daily, read_daily_csv
    from ml.forecast.ensemble import daily_ensemble

    steps = sorted({int(part) for part in horizons.split(",") if part.strip()})
    if not steps or steps[0] < 1:
        raise typer.BadParameter("horizons must be positive integers", param_hint="--horizons")
    if csv is not None:
        series = {csv.stem: read_daily_csv(str(csv), exponentiate=log_values)}
    else:
        series = hub_like_daily(apps, days, seed)
    base = daily_ensemble()
    forecasters: list[Forecaster] = [*base.members, base]
    candidate = None
    if lstm:
        with_lstm = daily_ensemble(with_lstm=True)
        forecasters += [with_lstm.members[-1], with_lstm]
        candidate = (base.name, with_lstm.name)
    with Progress(
        TextColumn("backtesting"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not sys.stderr.isatty(),
    ) as bar:
        task = bar.add_task("series", total=len(series))
        evaluation = evaluate_daily(
            series,
            forecasters,
            steps,
            origins,
            candidate=candidate,
            n_jobs=jobs,
            progress=lambda done: bar.advance(task, done),
        )
    summary = {"source": str(csv) if csv else f"generated apps={apps} days={days} seed={seed}"}
    summary |= evaluation.to_dict()
    if as_json:
        out.print_json(json.dumps(summary))
        return
    table = Table(
        title=f"{evaluation.n_series} daily series, {origins} origins: {summary['source']}"
    )
    for column in ("model", "horizon", "sMAPE", "MASE", "95% coverage", "forecasts"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for score in evaluation.scores:
        table.add_row(
            score.model,
            str(score.horizon),
            f"{score.smape:.2f}",
            f"{score.mase:.3f}",
            f"{score.coverage:.3f}",
            str(score.forecasts),
        )
    out.print(table)
    if evaluation.member_verdict:
        out.print(f"LSTM member: {json.dumps(evaluation.member_verdict)}")
