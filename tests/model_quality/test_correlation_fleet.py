"""The correlation evaluation's detector mode: the hub's fleet (ml.anomaly) on scenario frames."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml.anomaly.fleet import DetectorSpec
from ml.evaluation.correlation import fleet_anomalies

T0 = pd.Timestamp("2026-11-20T00:00:00Z")


def _routes(n: int, n_hours: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        requests = 1000 * rng.lognormal(0, 0.04, n_hours)
        tokens = requests * 1000 * rng.lognormal(0, 0.03, n_hours)
        frames.append(
            pd.DataFrame(
                {
                    "bucket_at": pd.date_range(T0, periods=n_hours, freq="h"),
                    "tenant_id": f"t{i % 4}",
                    "asset_id": f"a{i}",
                    "request_model": "gpt-4o",
                    "request_count": requests,
                    "tokens": tokens,
                    "cost_usd": tokens * 2e-6,
                    "error_rate": 0.01,
                    "latency_p95_ms": 2000 * rng.lognormal(0, 0.03, n_hours),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def test_fleet_detector_flags_the_injected_spike_in_the_anomalies_shape() -> None:
    series = _routes(2, 8 * 24, seed=5)
    since = T0 + pd.Timedelta(days=7)
    spike = since + pd.Timedelta(hours=5)
    hit = (series["asset_id"] == "a1") & (series["bucket_at"] == spike)
    series.loc[hit, ["tokens", "cost_usd"]] *= 6
    flags = fleet_anomalies(series, since, DetectorSpec(members=("robust_baseline",)))
    flagged = flags[flags["is_anomaly"]]
    assert set(flags["bucket_at"]) == set(series.loc[series["bucket_at"] >= since, "bucket_at"])
    assert {"a1"} == set(flagged.loc[flagged["bucket_at"] == spike, "asset_id"])
    assert {"tokens", "cost_usd"} <= set(flagged.loc[flagged["bucket_at"] == spike, "metric"])
    assert set(flags["tenant_id"]) == {"t0", "t1"}
