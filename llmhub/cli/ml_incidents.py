"""``llmhub ml eval-incidents``: the detector and the forecaster on synthetic incidents.

The harness is ``llmhub.incident_eval`` (traffic generated and ingested in process) and
``ml.evaluation.incidents`` (the grading); this module parses options, runs the seeds with a
progress bar and prints the summary.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from llmhub.cli.output import console, out
from ml.evaluation.incidents.settings import DEFAULT_TRAIN_END, DETECTORS, FORECAST_HORIZON

# The module is imported whenever ``llmhub`` starts: numpy, pandas, torch and ``ml`` are
# imported inside the command.
if TYPE_CHECKING:
    from ml.evaluation.incidents.detection import FeedbackEffect
    from ml.evaluation.incidents.forecast import ForecastScore


ml_incidents_app = typer.Typer()


@contextmanager
def _progress() -> Iterator[Progress]:
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not sys.stderr.isatty(),
    ) as bar:
        yield bar


def _table(summary: dict[str, Any]) -> Table:
    table = Table(
        title=f"{summary['detector']}: seeds {summary['seeds']}, {summary['incidents']} incidents, "
        f"{summary['series_hours']:,} active series-hours ({summary['config']['seconds']:.0f} s)"
    )
    table.add_column("figure")
    table.add_column("value", justify="right")

    def fmt(value: Any, spec: str = ".3f") -> str:
        return "n/a" if value is None else format(value, spec)

    table.add_row("recall", fmt(summary["recall"]))
    for kind, recall in summary["recall_by_kind"].items():
        delay = summary["mean_delay_hours_by_kind"][kind]
        table.add_row(f"  {kind}", f"{fmt(recall)} (delay {fmt(delay, '.1f')} h)")
    table.add_row("false positives", str(summary["false_positives"]))
    table.add_row("FP per 1000 series-hours", fmt(summary["fp_per_1000_series_hours"], ".2f"))
    table.add_row("precision (flag-hours)", fmt(summary["precision"]))
    forecast = summary["forecast"]
    if forecast:
        table.add_row("tenant MAPE %", fmt(forecast["tenant_mape"], ".2f"))
        table.add_row(
            "route MAPE % mean / median",
            f"{fmt(forecast['route_mape_mean'], '.1f')} / "
            f"{fmt(forecast['route_mape_median'], '.1f')}",
        )
        table.add_row("route WAPE %", fmt(forecast["route_wape"], ".2f"))
        table.add_row(
            "Poisson floor route MAPE %", fmt(forecast["poisson_floor_route_mape"], ".1f")
        )
    for name, target in summary["targets"].items():
        table.add_row(f"target {name}", {True: "met", False: "MISSED", None: "n/a"}[target["met"]])
    return table


@ml_incidents_app.command("eval-incidents")
def eval_incidents(
    seeds: Annotated[
        str, typer.Option(help="Comma-separated seeds or ranges (0,1,2 or 0-4).")
    ] = "0,1,2",
    train_days: Annotated[
        int, typer.Option(min=3, help="Days of clean traffic the detector is fitted on.")
    ] = 14,
    test_days: Annotated[
        int, typer.Option(min=2, help="Days of traffic with incidents that are scored.")
    ] = 14,
    events_per_day: Annotated[
        int, typer.Option(min=1000, help="Telemetry events per day (weekly mean), whole fleet.")
    ] = 50_000,
    detector: Annotated[
        str,
        typer.Option(
            help=f"Detector, or several comma-separated evaluated on the same traffic: "
            f"{', '.join(DETECTORS)} (ensemble: the published one)."
        ),
    ] = "ensemble",
    incident_set: Annotated[
        str,
        typer.Option(
            help="gross (4 obvious incidents) or realistic (those plus subtle ones on one "
            "route each, a drift, a level shift, a traffic stop)."
        ),
    ] = "gross",
    count_test: Annotated[
        bool,
        typer.Option(help="Run production's count test for stopped traffic beside the detector."),
    ] = True,
    shift_test: Annotated[
        bool,
        typer.Option(
            help="Run production's shift test (CUSUM on latency, error rate, cost per request)."
        ),
    ] = True,
    grace_hours: Annotated[
        float, typer.Option(min=0, help="Hours after an incident in which a flag detects it.")
    ] = 2.0,
    forecast_seeds: Annotated[
        int,
        typer.Option(
            min=0, help="Backtest the forecaster on the first N seeds (0: skip; ~3 s per fit)."
        ),
    ] = 1,
    forecast_origins: Annotated[
        int,
        typer.Option(
            min=1, help="Daily forecast origins at the end of the test window (7: each weekday)."
        ),
    ] = 7,
    route_forecasts: Annotated[
        bool,
        typer.Option(help="Backtest every route too, not only the tenant totals (slower)."),
    ] = True,
    train_end: Annotated[
        str, typer.Option(help="End of the training window (ISO-8601 UTC, whole hour).")
    ] = DEFAULT_TRAIN_END,
    plain_baseline: Annotated[
        bool,
        typer.Option(
            help="Also grade the robust baseline without the count and shift tests on the same "
            "traffic, and report each detector's difference from it paired by seed."
        ),
    ] = False,
    ground_truth_out: Annotated[
        Path | None,
        typer.Option(file_okay=False, help="Write each seed's ground truth JSON into DIR."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Grade the anomaly detector on synthetic incidents and backtest the forecaster.

    Per seed: a clean training window and a test window with a latency regression, a cost
    spike, an error storm and a security burst; the detector is fitted on the first and scores
    the second online. Reports recall per incident kind (over all seeds), false positives per
    active series-hour and precision, and the forecaster's MAPE per tenant (the 12% target) and
    per route with the Poisson noise floor.
    """
    # Most of the length is the option declarations; the body parses, loops seeds, prints.
    import pandas as pd
    import torch

    from llmhub.incident_eval import evaluate_seed
    from llmhub.producers.synthetic.plan import INCIDENT_SETS
    from ml.evaluation.incidents.base import IncidentEvaluationError
    from ml.evaluation.incidents.detection import DetectionReport
    from ml.evaluation.incidents.forecast import summarise_forecasts
    from ml.evaluation.incidents.harness import (
        PLAIN_BASELINE,
        SeedWindows,
        detector_spec,
        paired_difference,
        parse_seeds,
        seed_spread,
        summary_dict,
    )

    try:
        chosen = parse_seeds(seeds)
        names = [d.strip() for d in detector.split(",") if d.strip()]
        specs = {name: detector_spec(name, shift_test) for name in names}
        if not specs:
            raise ValueError("give at least one detector")
        if plain_baseline:
            specs[PLAIN_BASELINE] = detector_spec("robust_baseline")
        if incident_set not in INCIDENT_SETS:
            raise ValueError(f"unknown incident set {incident_set!r}; choose from {INCIDENT_SETS}")
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    try:
        t0 = pd.Timestamp(train_end)
    except ValueError:
        raise typer.BadParameter(f"not a timestamp: {train_end!r}") from None
    t0 = t0.tz_localize("UTC") if t0.tzinfo is None else t0.tz_convert("UTC")
    if t0 != t0.floor("h"):
        raise typer.BadParameter("--train-end must be a whole hour")
    train_end_at = t0.to_pydatetime().astimezone(UTC)
    if ground_truth_out is not None:
        ground_truth_out.mkdir(parents=True, exist_ok=True)
    # The LSTM is tiny: more threads only contend (and this runs beside other work).
    torch.set_num_threads(1)

    started = time.perf_counter()
    reports: dict[str, list[DetectionReport]] = {name: [] for name in specs}
    feedbacks: dict[str, FeedbackEffect] = {}
    forecast_scores: list[ForecastScore] = []
    per_seed: dict[str, list[dict[str, Any]]] = {name: [] for name in specs}
    windows = SeedWindows(train_days, test_days, events_per_day, train_end_at, incident_set)
    try:
        with _progress() as bar:
            seed_task = bar.add_task("seeds", total=len(chosen))
            for index, seed in enumerate(chosen):
                results = evaluate_seed(
                    seed,
                    windows,
                    specs,
                    grace_hours,
                    forecast_origins if index < forecast_seeds else 0,
                    route_forecasts,
                    bar,
                    ground_truth_out,
                    count_test=count_test,
                    shift_test=shift_test,
                    plain=(PLAIN_BASELINE,),
                )
                for name, (seed_report, seed_feedback, scores, details) in results.items():
                    reports[name].append(seed_report)
                    known = feedbacks.get(name)
                    feedbacks[name] = seed_feedback if known is None else known + seed_feedback
                    forecast_scores.extend(scores)
                    per_seed[name].append(details)
                bar.advance(seed_task)
    except (IncidentEvaluationError, ValueError) as exc:
        console.print(f"[red]evaluation failed:[/] {exc}")
        raise typer.Exit(2) from None

    forecast = None
    if forecast_scores:
        forecast = {
            **summarise_forecasts(forecast_scores),
            "seeds": chosen[:forecast_seeds],
            "horizon_hours": FORECAST_HORIZON,
            "origins": forecast_origins,
            "origin_step_hours": 24,
            "route_level": route_forecasts,
            "unit": "percent",
            "target_level": "tenant",
        }
    config = {
        "train_days": train_days,
        "test_days": test_days,
        "events_per_day": events_per_day,
        "grace_hours": grace_hours,
        "train_end": train_end_at.isoformat().replace("+00:00", "Z"),
        "seconds": round(time.perf_counter() - started, 1),
    }
    config["incident_set"] = incident_set
    config["count_test"] = count_test
    config["shift_test"] = shift_test
    config["load_avg_1m"] = round(os.getloadavg()[0], 2)
    summaries = {}
    for name, seed_reports in reports.items():
        total = sum(seed_reports, DetectionReport())
        summaries[name] = summary_dict(name, chosen, total, forecast, per_seed[name], config)
        summaries[name]["feedback"] = feedbacks[name].to_dict() if name in feedbacks else None
        summaries[name]["seed_spread"] = seed_spread(seed_reports)
        if plain_baseline and name != PLAIN_BASELINE:
            summaries[name]["paired_minus_plain_baseline"] = paired_difference(
                seed_reports, reports[PLAIN_BASELINE]
            )
    if len(summaries) == 1:
        summary = next(iter(summaries.values()))
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
        else:
            out.print(_table(summary))
        return
    combined = {"detectors": summaries, "config": config, "seeds": chosen}
    if as_json:
        typer.echo(json.dumps(combined, indent=2))
    else:
        for summary in summaries.values():
            out.print(_table(summary))
