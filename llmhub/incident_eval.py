"""One seed of the incident evaluation: synthetic traffic generated and ingested in process.

Per seed the generator plans one fleet of tenants and applications and produces two
consecutive windows of its traffic: a clean training window and a test window right after it
with one incident of each kind. Messages go through the ingestion normaliser (the rows ingestion
would write) and are aggregated per hour as the dbt mart does; ``ml.evaluation.incidents``
grades the detector and the forecaster on them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from llmhub.config import Settings
from llmhub.contract.topics import BY_FAMILY
from llmhub.ingest.normalize import Normalizer, Rejection
from llmhub.producers.synthetic import SyntheticTraffic, generate
from ml.evaluation.incidents.base import ALERT_COLUMNS, REQUEST_COLUMNS
from ml.evaluation.incidents.harness import SeedWindows, Tasks, evaluate_windows, window_events
from ml.evaluation.incidents.hourly import hourly_requests, hourly_security_alerts

if TYPE_CHECKING:
    from datetime import datetime

    from ml.anomaly.fleet import DetectorSpec
    from ml.evaluation.incidents.detection import DetectionReport, FeedbackEffect
    from ml.evaluation.incidents.forecast import ForecastScore

logger = logging.getLogger(__name__)

# Rows of request telemetry aggregated at a time (bounded memory on long windows).
FLUSH_ROWS = 250_000


def window_frames(traffic: SyntheticTraffic, now: datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Ingest a window in process: request rows aggregated per hour, security alert counts.

    Every telemetry and security message goes through the ingestion ``Normalizer``, so the
    fields (status derived from the error type, tokens, latency, cost) are those the marts see.

    Raises:
        ValueError: a message was rejected (the generator and the contract disagree).
    """
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
            if len(rows) >= FLUSH_ROWS and hour != last_hour:
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


def evaluate_seed(
    seed: int,
    windows: SeedWindows,
    specs: Mapping[str, DetectorSpec],
    grace_hours: float,
    forecast_origins: int,
    route_forecasts: bool,
    tasks: Tasks,
    ground_truth_out: Path | None = None,
    count_test: bool = True,
    shift_test: bool = True,
    plain: Collection[str] = (),
) -> dict[str, tuple[DetectionReport, FeedbackEffect, list[ForecastScore], dict[str, Any]]]:
    """Generate and ingest one seed once, and evaluate each detector of ``specs`` on it;
    ``forecast_origins`` 0 skips the forecaster (run with the first detector only) and
    ``route_forecasts`` False backtests the tenant totals only. The detectors named in
    ``plain`` run without the count and shift tests whatever ``count_test`` and ``shift_test``
    say (the plain baseline beside the published configuration, on the same traffic).

    Returns:
        Per detector name: the detection report, the feedback effect, the forecast scores and
        the seed's details for the JSON output.
    """
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
        incident_set=windows.incident_set,
    )
    if ground_truth_out is not None:
        test_traffic.write_ground_truth(ground_truth_out / f"seed-{seed}.json")
    ingest = tasks.add_task(f"seed {seed}: ingest", total=2)
    train = window_frames(train_traffic, windows.test_end)
    tasks.advance(ingest)
    test = window_frames(test_traffic, windows.test_end)
    tasks.advance(ingest)
    tasks.remove_task(ingest)
    ingest_seconds = round(time.perf_counter() - started, 1)

    out = {}
    for index, (name, spec) in enumerate(specs.items()):
        report, feedback, scores, figures = evaluate_windows(
            windows,
            train,
            test,
            train_traffic.start,
            test_traffic.ground_truth(),
            spec,
            grace_hours,
            forecast_origins if index == 0 else 0,
            route_forecasts,
            tasks,
            f"seed {seed} {name}",
            count_test=count_test and name not in plain,
            shift_test=shift_test and name not in plain,
        )
        logger.info(
            "seed %d %s: %d series, %d/%d incidents detected, %d false positives; "
            "ingest %.0f s, detect %.0f s, forecast %.0f s",
            seed,
            name,
            report.series,
            sum(o.detected for o in report.outcomes),
            len(report.outcomes),
            report.false_positives,
            ingest_seconds,
            figures["seconds"]["detect"],
            figures["seconds"]["forecast"],
        )
        details = {
            "seed": seed,
            "tenants": len(train_traffic.tenants),
            "applications": len(train_traffic.applications),
            "recall": report.recall,
            "fp_per_1000_series_hours": report.fp_per_1000_series_hours,
            "recall_by_kind": {kind: k.recall for kind, k in report.by_kind().items()},
            **figures,
            "seconds": {"ingest": ingest_seconds, **figures["seconds"]},
        }
        out[name] = (report, feedback, scores, details)
    return out
