"""``llmhub ml eval-incidents``: the detector and the forecaster on synthetic incidents.

For every seed the synthetic generator plans one fleet of tenants and applications and produces
two consecutive windows of its traffic: a clean training window ending at ``--train-end`` and a
test window right after it with one incident of each kind. Messages go through the ingestion
normaliser (the rows ingestion would write), are aggregated per hour as the dbt mart does, and
the detector is fitted on the training window and scores the test window online, as production
trains weekly and scores hourly. ``ml.evaluation.incidents`` holds the rules.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

# The module is imported whenever ``llmhub`` starts: numpy, pandas, torch and ``ml`` are
# imported inside the functions that need them.
if TYPE_CHECKING:
    import pandas as pd

    from llmhub.producers.synthetic import SyntheticTraffic
    from ml.anomaly.fleet import DetectorSpec
    from ml.evaluation.incidents import DetectionReport, FeedbackEffect, ForecastScore

logger = logging.getLogger(__name__)

DETECTORS = ("ensemble", "robust_baseline", "isolation_forest", "lstm_autoencoder")
TARGET_RECALL = 0.9
TARGET_FP_RATE = 0.05
TARGET_TENANT_MAPE = 12.0
FORECAST_HORIZON = 24
SEASON = 24
# A Monday midnight: fixed so a seed always gives the same traffic (the generator's daily and
# weekly cycles follow absolute time).
DEFAULT_TRAIN_END = "2026-01-05T00:00:00Z"
# The generator's weekend traffic relative to a weekday (llmhub.producers.synthetic).
_WEEKEND_WEIGHT = 0.45
# Rows of request telemetry aggregated at a time (bounded memory on long windows).
_FLUSH_ROWS = 250_000

_console = Console(stderr=True)


def detector_spec(name: str) -> DetectorSpec:
    """The published detector fleet (``ensemble``) or a fleet of one member, at the published
    threshold (0.5) and cooldown (64 h)."""
    from ml.anomaly.fleet import DetectorSpec

    if name == "ensemble":
        return DetectorSpec()
    if name not in DETECTORS:
        raise typer.BadParameter(f"unknown detector {name!r}; choose from {list(DETECTORS)}")
    return DetectorSpec(members=(name,))


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` or ``"0-4"`` (or a mix) as a sorted list of distinct non-negative seeds."""
    seeds: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                seeds.update(range(lo, hi + 1))
            else:
                seeds.add(int(part))
        except ValueError:
            raise typer.BadParameter(f"not a seed or seed range: {part!r}") from None
    if not seeds or min(seeds) < 0:
        raise typer.BadParameter("give at least one non-negative seed")
    return sorted(seeds)


def window_events(events_per_day: int, end: datetime, days: int) -> int:
    """Events for a window of ``days`` ending at ``end`` so that every window has the same
    traffic level: ``events_per_day`` is the mean over a whole week.

    The generator spreads a window's events over its own weekday/weekend weights (weekend hours
    weigh 0.45 of a weekday's in ``llmhub.producers.synthetic``), so a fixed number per day would
    raise the weekday level of a window holding more weekend days and break the continuity of a
    training window and the test window after it.
    """
    import numpy as np
    import pandas as pd

    hours = pd.date_range(end=end - timedelta(hours=1), periods=24 * days, freq="h")
    weights = np.where(hours.dayofweek >= 5, _WEEKEND_WEIGHT, 1.0)
    week_mean = (5 + 2 * _WEEKEND_WEIGHT) / 7
    return round(events_per_day * weights.sum() / 24 / week_mean)


def window_frames(traffic: SyntheticTraffic, now: datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Ingest a window in process: request rows aggregated per hour, security alert counts.

    Every telemetry and security message goes through the ingestion ``Normalizer``, so the
    fields (status derived from the error type, tokens, latency, cost) are those the marts see.

    Raises:
        ValueError: a message was rejected (the generator and the contract disagree).
    """
    import pandas as pd

    from llmhub.config import Settings
    from llmhub.contract.topics import BY_FAMILY
    from llmhub.ingest.normalize import Normalizer, Rejection
    from ml.evaluation.incidents import (
        ALERT_COLUMNS,
        REQUEST_COLUMNS,
        hourly_requests,
        hourly_security_alerts,
    )

    settings = Settings()
    telemetry = Normalizer(BY_FAMILY["telemetry"], settings)
    security = Normalizer(BY_FAMILY["security"], settings)
    request_at = [telemetry.table.columns.index(c) for c in REQUEST_COLUMNS]
    alert_at = [security.table.columns.index(c) for c in ALERT_COLUMNS]
    hourly_parts: list[pd.DataFrame] = []
    rows: list[tuple[Any, ...]] = []
    alerts: list[tuple[Any, ...]] = []
    last_hour = -1

    def flush() -> None:
        if rows:
            frame = pd.DataFrame(rows, columns=list(REQUEST_COLUMNS))
            hourly_parts.append(hourly_requests(frame))
            rows.clear()

    for offset, message in enumerate(traffic.iter_messages()):
        if message.topic == telemetry.spec.topic:
            normaliser, target, columns = telemetry, rows, request_at
            hour = (message.timestamp_ms or 0) // 3_600_000
            # Telemetry comes sorted by time: flushing between hours never splits one.
            if len(rows) >= _FLUSH_ROWS and hour != last_hour:
                flush()
            last_hour = hour
        elif message.topic == security.spec.topic:
            normaliser, target, columns = security, alerts, alert_at
        else:
            continue
        row = normaliser.normalize(message.value, 0, offset, now)
        if isinstance(row, Rejection):
            raise ValueError(f"message {offset} on {message.topic} rejected: {row.error}")
        target.append(tuple(row[i] for i in columns))
    flush()
    if not hourly_parts:
        raise ValueError(f"no telemetry in the window {traffic.start} - {traffic.end}")
    alert_frame = pd.DataFrame(alerts, columns=list(ALERT_COLUMNS))
    return pd.concat(hourly_parts, ignore_index=True), hourly_security_alerts(alert_frame)


@dataclass(frozen=True)
class SeedWindows:
    """The two consecutive windows generated per seed."""

    train_days: int
    test_days: int
    events_per_day: int
    train_end: datetime

    @property
    def test_end(self) -> datetime:
        return self.train_end + timedelta(days=self.test_days)


def evaluate_seed(
    seed: int,
    windows: SeedWindows,
    spec: DetectorSpec,
    grace_hours: float,
    forecast_origins: int,
    route_forecasts: bool,
    bar: Progress,
    ground_truth_out: Path | None = None,
) -> tuple[DetectionReport, FeedbackEffect, list[ForecastScore], dict[str, Any]]:
    """Generate, ingest and evaluate one seed; ``forecast_origins`` 0 skips the forecaster and
    ``route_forecasts`` False backtests the tenant totals only.

    Returns:
        The detection report, the feedback effect, the forecast scores and the seed's details
        for the JSON output.
    """
    import pandas as pd

    from llmhub.producers.synthetic import generate
    from ml.evaluation.incidents import (
        align_series,
        backtest_request_rate,
        build_series,
        evaluate_detection,
        fleet_fit_score,
        incidents_from_ground_truth,
        request_rate_series,
    )
    from ml.forecast import default_ensemble

    started = time.perf_counter()
    train_traffic = generate(
        window_events(windows.events_per_day, windows.train_end, windows.train_days),
        windows.train_days,
        seed,
        windows.train_end,
        incidents=False,
    )
    test_traffic = generate(
        window_events(windows.events_per_day, windows.test_end, windows.test_days),
        windows.test_days,
        seed,
        windows.test_end,
        incidents=True,
    )
    if ground_truth_out is not None:
        test_traffic.write_ground_truth(ground_truth_out / f"seed-{seed}.json")
    ingest = bar.add_task(f"seed {seed}: ingest", total=2)
    train_hourly, train_alerts = window_frames(train_traffic, windows.test_end)
    bar.advance(ingest)
    test_hourly, test_alerts = window_frames(test_traffic, windows.test_end)
    bar.advance(ingest)
    bar.remove_task(ingest)
    train, test = align_series(
        build_series(train_hourly, train_alerts, train_traffic.start, windows.train_end),
        build_series(test_hourly, test_alerts, windows.train_end, windows.test_end),
    )
    ingested = time.perf_counter()

    incidents, bursts = incidents_from_ground_truth(test_traffic.ground_truth())
    detect = bar.add_task(f"seed {seed}: detect", total=len(test))
    # Feedback: an analyst marks every false alarm of the first half of the test window; the
    # thresholds tuned from them are applied to the second half (see feedback_effect).
    split = pd.Timestamp(windows.train_end) + pd.Timedelta(days=windows.test_days / 2)
    report, feedback = evaluate_detection(
        train,
        test,
        incidents,
        bursts,
        fit_score=fleet_fit_score(spec, lambda _: bar.advance(detect)),
        grace_hours=grace_hours,
        feedback_split=split.floor("h"),
        threshold=spec.threshold,
    )
    bar.remove_task(detect)
    detected = time.perf_counter()

    scores: list[ForecastScore] = []
    if forecast_origins:
        # The published forecaster (assets.ml_models.pyfunc.build_forecaster of adaptive_naive,
        # sarima and prophet, season 24, weekly season 168, level 0.95).
        forecaster = default_ensemble(SEASON, 0.95, weekly_season=7 * SEASON)
        tenants, routes = request_rate_series(train, test)
        if not route_forecasts:
            routes = {}
        task = bar.add_task(f"seed {seed}: forecast", total=len(tenants) + len(routes))
        for level, group in (("tenant", tenants), ("route", routes)):
            scores += backtest_request_rate(
                group,
                level,
                forecaster,
                test_hours=24 * windows.test_days,
                horizon=FORECAST_HORIZON,
                season=SEASON,
                n_origins=forecast_origins,
                on_series=lambda _: bar.advance(task),
            )
        bar.remove_task(task)
    finished = time.perf_counter()

    logger.info(
        "seed %d: %d series, %d/%d incidents detected, %d false positives; "
        "ingest %.0f s, detect %.0f s, forecast %.0f s",
        seed,
        report.series,
        sum(o.detected for o in report.outcomes),
        len(report.outcomes),
        report.false_positives,
        ingested - started,
        detected - ingested,
        finished - detected,
    )
    details = {
        "seed": seed,
        "tenants": len(train_traffic.tenants),
        "applications": len(train_traffic.applications),
        "series": report.series,
        "series_hours": report.series_hours,
        "false_positives": report.false_positives,
        "feedback": feedback.to_dict(),
        "outcomes": [o.to_dict() for o in report.outcomes],
        "forecast_series": len(scores),
        "seconds": {
            "ingest": round(ingested - started, 1),
            "detect": round(detected - ingested, 1),
            "forecast": round(finished - detected, 1),
        },
    }
    return report, feedback, scores, details


@contextmanager
def _progress() -> Iterator[Progress]:
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_console,
        disable=not sys.stderr.isatty(),
    ) as bar:
        yield bar


def _clean(value: Any) -> Any:
    """JSON-ready: NaN becomes null, containers recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _target(value: float | None, met: Callable[[float], bool]) -> dict[str, Any]:
    defined = value is not None and math.isfinite(value)
    return {"value": value if defined else None, "met": met(value) if defined else None}


def summary_dict(
    detector: str,
    seeds: list[int],
    report: DetectionReport,
    forecast: dict[str, Any] | None,
    per_seed: list[dict[str, Any]],
    config: dict[str, Any],
) -> dict[str, Any]:
    """The command's JSON object (NaN as null)."""
    kinds = report.by_kind()
    tenant_mape = forecast.get("tenant_mape") if forecast else None
    summary = {
        "detector": detector,
        "seeds": seeds,
        "incidents": len(report.outcomes),
        "detected": sum(o.detected for o in report.outcomes),
        "recall": report.recall,
        "recall_by_kind": {kind: s.recall for kind, s in kinds.items()},
        "incidents_by_kind": {kind: s.incidents for kind, s in kinds.items()},
        "mean_delay_hours_by_kind": {kind: s.mean_delay_hours for kind, s in kinds.items()},
        "false_positives": report.false_positives,
        "false_positives_by_metric": dict(report.false_positive_metrics),
        "true_positive_flags": report.true_positive_flags,
        "explained_flags": report.explained_flags,
        "rate_limit_burst_flags": report.burst_flags,
        "series": report.series,
        "series_hours": report.series_hours,
        "fp_per_1000_series_hours": report.fp_per_1000_series_hours,
        "fp_rate": report.fp_rate,
        "precision": report.precision,
        "forecast": forecast,
        "targets": {
            f"recall>={TARGET_RECALL}": _target(report.recall, lambda v: v >= TARGET_RECALL),
            f"fp_rate<{TARGET_FP_RATE}": _target(report.fp_rate, lambda v: v < TARGET_FP_RATE),
            f"tenant_mape<{TARGET_TENANT_MAPE:g}%": _target(
                tenant_mape, lambda v: v < TARGET_TENANT_MAPE
            ),
        },
        "config": config,
        "per_seed": per_seed,
    }
    return _clean(summary)


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
        str, typer.Option(help=f"Detector: {', '.join(DETECTORS)} (ensemble: the published one).")
    ] = "ensemble",
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
    import pandas as pd
    import torch

    from ml.evaluation.incidents import (
        DetectionReport,
        IncidentEvaluationError,
        summarise_forecasts,
    )

    chosen = parse_seeds(seeds)
    spec = detector_spec(detector)
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
    report = DetectionReport()
    feedback: FeedbackEffect | None = None
    forecast_scores: list[ForecastScore] = []
    per_seed: list[dict[str, Any]] = []
    try:
        with _progress() as bar:
            seed_task = bar.add_task("seeds", total=len(chosen))
            for index, seed in enumerate(chosen):
                seed_report, seed_feedback, scores, details = evaluate_seed(
                    seed,
                    SeedWindows(train_days, test_days, events_per_day, train_end_at),
                    spec,
                    grace_hours,
                    forecast_origins if index < forecast_seeds else 0,
                    route_forecasts,
                    bar,
                    ground_truth_out,
                )
                report = report + seed_report
                feedback = seed_feedback if feedback is None else feedback + seed_feedback
                forecast_scores.extend(scores)
                per_seed.append(details)
                bar.advance(seed_task)
    except (IncidentEvaluationError, ValueError) as exc:
        _console.print(f"[red]evaluation failed:[/] {exc}")
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
    summary = summary_dict(detector, chosen, report, forecast, per_seed, config)
    summary["feedback"] = feedback.to_dict() if feedback is not None else None
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        Console().print(_table(summary))
