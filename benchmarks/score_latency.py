"""Hourly anomaly scoring of the whole fleet: seconds per 100 series (target: under 1 s).

1. Builds ``--series`` hourly series of ``--weeks`` weeks: daily and weekly seasonality, Poisson
   counts with Zipf-distributed volumes (a few busy routes, many quiet ones), as the hub's
   request, token and cost series look.
2. Fits the published detector fleet (``DetectorSpec()``: robust baseline + Isolation Forest +
   shared LSTM autoencoder, mean fusion) on the training weeks, as the weekly training does,
   and writes it as the data files of the MLflow model's artifact (``ml.anomaly.fleet_state``).
3. Loads the files and scores one hourly batch through ``DetectorModel.score``, the pyfunc
   path (DataFrame in, grouping, scoring, DataFrame out; the ``analytics/anomalies`` asset calls
   ``score_series`` with its series directly, skipping the grouping, so it is a bound). Each
   series is handed the hours since its training data ended: at the first run after training
   (``--score-hours`` + 1 hours, as the published fleet leaves the newest ``score_hours`` out)
   and at the last run before the next training (a week more). ``--repeat`` times each;
   reports the median, and the minimum, per 100 series.

The last line printed is one JSON object; it is also written to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.console import Console

from ml.anomaly.fleet import DetectorSpec, Fleet
from ml.anomaly.fleet_state import load_fleet, save_fleet
from ml.pyfunc import DetectorModel

console = Console(stderr=True)
RESULTS = Path(__file__).parent / "results"
METRICS = ("request_count", "tokens", "cost_usd")


def fleet_series(n: int, hours: int, seed: int) -> dict[tuple[str, str], pd.Series]:
    """``n`` hourly series over ``hours`` hours ending at the last full hour."""
    rng = np.random.default_rng(seed)
    end = pd.Timestamp.now(tz="UTC").floor("h")
    index = pd.date_range(end=end, periods=hours, freq="h")
    hour = index.hour.to_numpy()
    weekend = index.dayofweek.to_numpy() >= 5
    shape = (1 + 0.6 * np.cos(2 * np.pi * (hour - 15) / 24)) * np.where(weekend, 0.45, 1.0)
    volumes = 2000.0 / np.arange(1, n + 1) ** 0.9
    out = {}
    for i in range(n):
        metric = METRICS[i % len(METRICS)]
        rate = volumes[i] * shape * rng.lognormal(0, 0.05, hours)
        counts = rng.poisson(rate).astype(float)
        values = counts * (1_500 if metric == "tokens" else 0.002 if metric == "cost_usd" else 1)
        out[(f"tenant-{i % 7}/app-{i}/model-{i % 5}", metric)] = pd.Series(values, index=index)
    return out


def model_input(series: dict[tuple[str, str], pd.Series]) -> pd.DataFrame:
    return pd.concat(
        [
            pd.DataFrame(
                {"series_id": sid, "metric": metric, "bucket_at": v.index, "value": v.to_numpy()}
            )
            for (sid, metric), v in series.items()
        ],
        ignore_index=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=300)
    parser.add_argument("--weeks", type=int, default=3, help="weeks of training history")
    parser.add_argument("--score-hours", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    train_hours = args.weeks * 168
    total = train_hours + args.score_hours + 1 + 168
    series = fleet_series(args.series, total, args.seed)
    train = {k: v.iloc[:train_hours] for k, v in series.items()}

    console.print(f"fitting the fleet on {args.series} series x {train_hours} h ...")
    started = time.perf_counter()
    fleet = Fleet.fit(DetectorSpec(), train)
    fit_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        paths = save_fleet(fleet, Path(tmp))
        artifact_mb = sum(p.stat().st_size for p in paths) / 1e6
        started = time.perf_counter()
        loaded = load_fleet(Path(tmp))
        load_s = time.perf_counter() - started

    model = DetectorModel(loaded, score_hours=args.score_hours)
    # The input the asset hands over: each series from the end of its training data.
    scenarios = {
        "after_training": args.score_hours + 1,
        "end_of_week": args.score_hours + 168,
    }
    timings: dict[str, dict[str, float]] = {}
    for name, since in scenarios.items():
        frame = model_input(
            {k: v.iloc[train_hours : train_hours + since] for k, v in series.items()}
        )
        runs = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            scores, stats = model.score(frame, args.score_hours)
            runs.append(time.perf_counter() - started)
        if stats.fitted or stats.skipped or len(scores) != args.series * args.score_hours:
            raise SystemExit(f"{name}: scoring refitted or skipped series: {stats}")
        per_100 = [100 * r / args.series for r in runs]
        timings[name] = {
            "hours_scored_per_series": since,
            "seconds": round(statistics.median(runs), 3),
            "seconds_per_100_series": round(statistics.median(per_100), 3),
            "best_seconds_per_100_series": round(min(per_100), 3),
            "runs_seconds": [round(r, 3) for r in runs],
        }
        console.print(f"{name}: {timings[name]}")
    worst = max(t["seconds_per_100_series"] for t in timings.values())
    result = {
        "benchmark": "score_latency",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "series": args.series,
        "train_hours": train_hours,
        "score_hours": args.score_hours,
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "torch_threads": torch.get_num_threads(),
        "fit_seconds": round(fit_s, 1),
        "artifact_mb": round(artifact_mb, 1),
        "artifact_load_seconds": round(load_s, 2),
        "scoring": timings,
        "worst_seconds_per_100_series": worst,
        "target_seconds_per_100_series": 1.0,
        "target_met": worst < 1.0,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "score_latency.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
