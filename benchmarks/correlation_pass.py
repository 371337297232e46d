"""One correlation pass over 1,000 open anomalies and 10,000 events: latency p50/p95 (JSON).

The frames come from one scenario world (``llmhub.producers.scenarios``, seed 0: its hourly
series, forecasts and ~10,000 registry / security / policy events, cut to exactly 10,000); the
1,000 anomalies are the detector's flags topped up with random series-hour-metric flags of the
scenario day, so the pass also has to group noise. Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pandas as pd

from llmhub.producers.scenarios import METRICS, detect_anomalies, generate_scenarios
from ml.correlation.engine import correlate

ANOMALIES = 1_000
EVENTS = 10_000
RUNS = int(os.environ.get("BENCH_RUNS", "15"))


def frames() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, str]]:
    data = generate_scenarios(0)
    scored = detect_anomalies(data.series, data.scenario_start)
    flagged = scored[scored["is_anomaly"]]
    rng = np.random.default_rng(0)
    rest = scored[~scored["is_anomaly"]]
    extra = rest.iloc[rng.choice(len(rest), ANOMALIES - len(flagged), replace=False)]
    extra = extra.assign(is_anomaly=True, score=0.9)
    anomalies = pd.concat([flagged, extra], ignore_index=True)
    events = data.events
    if len(events) > EVENTS:
        events = events.iloc[rng.choice(len(events), EVENTS, replace=False)]
    assert set(anomalies["metric"]) <= set(METRICS)
    return anomalies, events, data.series, data.forecasts, data.providers


def main() -> None:
    anomalies, events, series, forecasts, providers = frames()
    correlate(anomalies, events, providers, series=series, forecasts=forecasts)
    timings, cpu = [], []
    incidents = 0
    for _ in range(RUNS):
        started, started_cpu = time.perf_counter(), time.process_time()
        result = correlate(anomalies, events, providers, series=series, forecasts=forecasts)
        timings.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
        incidents = len(result.incidents)
    load = os.getloadavg()[0]
    print(
        json.dumps(
            {
                "benchmark": "correlation_pass",
                "anomalies": len(anomalies),
                "events": len(events),
                "series_rows": len(series),
                "incidents": incidents,
                "runs": RUNS,
                "p50_ms": round(float(np.percentile(timings, 50)), 1),
                "p95_ms": round(float(np.percentile(timings, 95)), 1),
                # CPU time of this process: on a shared, overloaded machine wall time mostly
                # measures the wait for a core.
                "cpu_p50_ms": round(float(np.percentile(cpu, 50)), 1),
                "cpu_p95_ms": round(float(np.percentile(cpu, 95)), 1),
                "target_ms": 500,
                "load_avg_1m": round(load, 2),
                "cpus": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
