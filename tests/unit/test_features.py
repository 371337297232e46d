"""Series built from the hourly mart: grid, idle hours, merged rows."""

import numpy as np
import pandas as pd
import pytest

from ml.features import (
    calendar_features,
    daily_tenant_cost,
    hourly_metrics,
    judged_hours,
    regular_series,
)


def _mart(**overrides: list) -> pd.DataFrame:
    rows = {
        "tenant_id": ["acme", "acme", "acme"],
        "asset_id": ["bot", "bot", "bot"],
        "request_model": ["gpt-4o"] * 3,
        "request_hour_at": pd.to_datetime(
            ["2026-01-01T00:00Z", "2026-01-01T00:00Z", "2026-01-01T02:00Z"]
        ),
        "request_count": [10, 30, 5],
        "error_count": [1, 2, 0],
        "input_tokens": [100, 300, 50],
        "output_tokens": [10, 30, 5],
        "cost_usd": [1.0, 3.0, 0.5],
        "paid_request_count": [9, 28, 0],
        "cost_log_sum": [9 * np.log(0.1), 28 * np.log(0.1), 0.0],
        "latency_log_count": [9, 28, 5],
        "latency_log_sum": [9 * np.log(80.0), 28 * np.log(160.0), 5 * np.log(40.0)],
        "time_to_first_token_log_count": [0, 28, 5],
        "time_to_first_token_log_sum": [0.0, 28 * np.log(20.0), 5 * np.log(5.0)],
        "latency_p95_ms": [100.0, 200.0, 50.0],
        "time_to_first_token_p95_ms": [np.nan, 20.0, 5.0],
    }
    rows.update(overrides)
    return pd.DataFrame(rows)


def test_rows_of_one_hour_merge_with_request_weights() -> None:
    metrics = hourly_metrics(_mart())
    first = metrics.iloc[0]
    assert first["request_count"] == 40
    assert first["error_rate"] == pytest.approx(3 / 40)
    assert first["latency_p95_ms"] == pytest.approx((10 * 100 + 30 * 200) / 40)
    # A row without a TTFT percentile carries no weight for it.
    assert first["time_to_first_token_p95_ms"] == pytest.approx(20.0)
    assert first["tokens"] == 440
    # The mean log cost of the billed requests, from sums that re-aggregate exactly.
    assert first["paid_request_count"] == 37
    assert first["cost_log_mean"] == pytest.approx(np.log(0.1))
    # Geometric means pool the rows' logs: (9 ln 80 + 28 ln 160) / 37.
    assert first["latency_log_mean"] == pytest.approx((9 * np.log(80) + 28 * np.log(160)) / 37)
    assert first["time_to_first_token_log_mean"] == pytest.approx(np.log(20.0))
    # An hour with nothing billed has no mean.
    assert np.isnan(metrics.iloc[1]["cost_log_mean"])


def test_idle_hours_are_zero_for_counts_and_unknown_for_rates() -> None:
    series = dict((key.metric, values) for key, values in regular_series(hourly_metrics(_mart())))
    assert list(series["request_count"]) == [40.0, 0.0, 5.0]
    billed = dict(regular_series(hourly_metrics(_mart()), ["paid_request_count"]))
    assert [list(v) for v in billed.values()] == [[37.0, 0.0, 0.0]]
    assert np.isnan(series["latency_p95_ms"].iloc[1])
    assert series["request_count"].index.freqstr == "h"


def test_missing_columns_are_named() -> None:
    with pytest.raises(ValueError, match="cost_usd"):
        hourly_metrics(_mart().drop(columns=["cost_usd"]))


def test_calendar_features_mark_weekends() -> None:
    index = pd.date_range("2026-01-03", periods=48, freq="h", tz="UTC")  # a Saturday
    features = calendar_features(index)
    assert features["is_weekend"].iloc[0] == 1.0
    assert features["hour_sin"].between(-1, 1).all()


def test_daily_tenant_cost_sums_applications() -> None:
    cost = pd.DataFrame(
        {
            "tenant_id": ["a", "a", "b"],
            "usage_date": ["2026-01-01", "2026-01-01", "2026-01-01"],
            "cost_usd": [1.5, 2.5, 3.0],
        }
    )
    result = daily_tenant_cost(cost)
    assert result.set_index("tenant_id")["cost_usd"].to_dict() == {"a": 4.0, "b": 3.0}


def test_rates_are_judged_only_with_enough_requests() -> None:
    # Regression: one failed request out of one (100% errors) alerted on quiet demo routes.
    active = np.array([True, True, True, False])
    requests = np.array([1, 20, 500, 0])
    assert judged_hours(active, requests, "error_rate").tolist() == [False, True, True, False]
    assert judged_hours(active, requests, "request_count").tolist() == active.tolist()
