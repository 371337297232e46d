"""Model inputs from the hourly request mart: one regular hourly series per
(tenant, application, model, metric), plus calendar features.

Input is ``marts.fct_llm_requests_hourly`` as a DataFrame (any extra columns are ignored). Its
grain includes the asset version and the provider; both are summed away here, so a
re-registration mid-hour does not split a series. Percentile columns cannot be merged exactly
across those rows: they are combined as a request-weighted mean, which is exact whenever one row
holds the hour (the usual case) and documented as approximate otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml.keys import RouteKey, encode_key

SERIES_COLUMNS: tuple[str, ...] = ("tenant_id", "asset_id", "request_model")

# metric -> how it is built from the mart's columns.
METRICS: tuple[str, ...] = (
    "request_count",
    "error_rate",
    "latency_p95_ms",
    "time_to_first_token_p95_ms",
    "tokens",
    "cost_usd",
)
#: Series the shift tests read beside ``METRICS`` (never scored by the detectors): the requests
#: billed in the hour (cost > 0) and the mean of their log costs, a geometric mean per request;
#: the successful requests with a latency and the means of their log latencies and log times to
#: first token (``ml.anomaly.shift_test.GEOMETRIC_INPUTS``).
SHIFT_INPUTS: tuple[str, ...] = (
    "paid_request_count",
    "cost_log_mean",
    "latency_log_count",
    "latency_log_mean",
    "time_to_first_token_log_mean",
)
#: Mean log series -> (sum column, count column) of the hourly mart.
_LOG_MEANS: dict[str, tuple[str, str]] = {
    "cost_log_mean": ("cost_log_sum", "paid_request_count"),
    "latency_log_mean": ("latency_log_sum", "latency_log_count"),
    "time_to_first_token_log_mean": (
        "time_to_first_token_log_sum",
        "time_to_first_token_log_count",
    ),
}
# Hours with no requests are real zeros for counts and sums, but unknown for rates/percentiles.
ZERO_WHEN_IDLE: frozenset[str] = frozenset(
    {"request_count", "tokens", "cost_usd", "paid_request_count", "latency_log_count"}
)
_WEIGHTED = ("latency_p95_ms", "time_to_first_token_p95_ms")
REQUIRED_COLUMNS: tuple[str, ...] = (
    *SERIES_COLUMNS,
    "request_hour_at",
    "request_count",
    "error_count",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "paid_request_count",
    "cost_log_sum",
    "latency_log_count",
    "latency_log_sum",
    "time_to_first_token_log_count",
    "time_to_first_token_log_sum",
    *_WEIGHTED,
)

#: Security alerts per application and hour (``fct_security_alerts`` grain, not per model): the
#: series carry ``SECURITY_ALERTS_MODEL`` in place of a model.
SECURITY_ALERTS = "security_alerts"
SECURITY_ALERTS_MODEL = "*"
# Rates and percentiles: unknown (NaN) in an hour without requests or measurements.
_MEASURED_WHEN_ACTIVE: frozenset[str] = frozenset(
    {"error_rate", "latency_p95_ms", "time_to_first_token_p95_ms"}
)
#: A rate or percentile is judged only in hours with at least this many requests: one failed
#: request out of one is a 100% error rate and no evidence of anything (the demo's quiet routes
#: raised exactly those alerts).
MIN_RATE_REQUESTS = 20


def judged_hours(
    active: np.ndarray, requests: np.ndarray, metric: str, min_requests: int = MIN_RATE_REQUESTS
) -> np.ndarray:
    """``active`` narrowed, for a rate or percentile, to hours with ``min_requests`` requests.

    Args:
        active: the activity mask of ``fill_idle_hours``.
        requests: the route's request count in the same hours.
        metric: the series' metric; counts and sums keep ``active`` as it is.
        min_requests: the volume below which a rate is not judged.
    """
    if metric not in _MEASURED_WHEN_ACTIVE:
        return np.asarray(active, dtype=bool)
    return np.asarray(active, dtype=bool) & (np.asarray(requests, dtype=float) >= min_requests)


@dataclass(frozen=True, order=True)
class SeriesKey:
    """Identifies one modelled series."""

    tenant_id: str
    asset_id: str
    request_model: str
    metric: str

    def label(self) -> str:
        """A collision-free string for the key (ids may contain "/": see ``ml.keys``)."""
        return encode_key(self.tenant_id, self.asset_id, self.request_model, self.metric)

    @property
    def route(self) -> RouteKey:
        """The tenant, application and model of the series."""
        return RouteKey(self.tenant_id, self.asset_id, self.request_model)


def hourly_metrics(hourly: pd.DataFrame) -> pd.DataFrame:
    """One row per (tenant, application, model, hour) with the modelled metrics as columns.

    Args:
        hourly: rows of ``fct_llm_requests_hourly``.

    Returns:
        Columns ``SERIES_COLUMNS + ("bucket_at",) + METRICS + SHIFT_INPUTS``; ``bucket_at`` is
        tz-aware UTC.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in hourly.columns]
    if missing:
        raise ValueError(f"hourly mart frame lacks columns {missing}")
    frame = hourly.loc[:, list(REQUIRED_COLUMNS)].copy()
    frame["bucket_at"] = pd.to_datetime(frame.pop("request_hour_at"), utc=True)
    for column in _WEIGHTED:
        # Weighted sums, divided back after the group-by; NaN percentiles carry no weight.
        weight = frame["request_count"].where(frame[column].notna(), 0)
        frame[f"{column}__w"] = weight
        frame[column] = frame[column].fillna(0) * weight
    frame["tokens"] = frame["input_tokens"] + frame["output_tokens"]
    grouped = (
        frame.drop(columns=["input_tokens", "output_tokens"])
        .groupby([*SERIES_COLUMNS, "bucket_at"], sort=True, observed=True)
        .sum(numeric_only=True)
    )
    for column in _WEIGHTED:
        weights = grouped.pop(f"{column}__w")
        grouped[column] = grouped[column] / weights.replace(0, np.nan)
    grouped["error_rate"] = grouped["error_count"] / grouped["request_count"].replace(0, np.nan)
    # Sums of logs re-aggregate exactly across the mart's rows of one hour.
    for mean, (total, count) in _LOG_MEANS.items():
        grouped[mean] = grouped[total] / grouped[count].replace(0, np.nan)
    return grouped.reset_index().loc[:, [*SERIES_COLUMNS, "bucket_at", *METRICS, *SHIFT_INPUTS]]


def regular_series(
    metrics: pd.DataFrame,
    metric_names: Sequence[str] = METRICS,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> Iterator[tuple[SeriesKey, pd.Series]]:
    """Yield each (series key, hourly values) on a complete hourly grid from ``start`` to ``end``.

    Missing hours are 0 for counts and sums (nothing happened) and NaN for rates and
    percentiles (nothing to measure); detectors decide how to treat NaN.
    """
    if metrics.empty:
        return
    lo = start if start is not None else metrics["bucket_at"].min()
    hi = end if end is not None else metrics["bucket_at"].max()
    grid = pd.date_range(lo.floor("h"), hi.floor("h"), freq="h", tz="UTC")
    for key_values, group in metrics.groupby(list(SERIES_COLUMNS), sort=True):
        indexed = group.set_index("bucket_at")
        for metric in metric_names:
            values = indexed[metric].reindex(grid)
            if metric in ZERO_WHEN_IDLE:
                values = values.fillna(0.0)
            values.name = metric
            yield SeriesKey(*key_values, metric), values.astype(float)


def fill_idle_hours(values: pd.Series, metric: str) -> tuple[pd.Series, np.ndarray]:
    """Model-ready values without NaN, and the mask of hours that had activity.

    Detectors refuse NaN, but ``regular_series`` leaves rates and percentiles NaN in hours
    without requests. Those hours carry the last measured value forward (leading NaNs take the
    first measured value, an all-NaN series is 0), which a detector reads as "nothing changed".
    Counts and sums are 0 when idle and pass unchanged; a zero count cannot be told apart from an
    idle hour in the series alone, so it is marked idle. Callers score the filled values and
    count a flag only where the mask is True: an idle hour is never an anomaly.

    Args:
        values: one hourly series from ``regular_series`` (or the security alert counts).
        metric: its metric: one of ``METRICS`` or ``SECURITY_ALERTS``.

    Returns:
        ``(filled, active)``: the filled series (same index and name) and a boolean array.

    Raises:
        ValueError: ``metric`` is not a known metric.
    """
    raw = values.astype(float)
    if metric in _MEASURED_WHEN_ACTIVE:
        active = raw.notna().to_numpy()
        filled = raw.ffill().bfill().fillna(0.0)
    elif metric in ZERO_WHEN_IDLE or metric == SECURITY_ALERTS:
        filled = raw.fillna(0.0)
        active = (filled != 0).to_numpy()
    else:
        raise ValueError(f"unknown metric {metric!r}; known: {[*METRICS, SECURITY_ALERTS]}")
    return filled, active


def calendar_features(index: pd.DatetimeIndex) -> pd.DataFrame:
    """Hour-of-day and day-of-week encodings (cyclical) and a weekend flag, by UTC time."""
    hours = index.hour.to_numpy()
    days = index.dayofweek.to_numpy()
    return pd.DataFrame(
        {
            "hour_sin": np.sin(2 * np.pi * hours / 24),
            "hour_cos": np.cos(2 * np.pi * hours / 24),
            "dow_sin": np.sin(2 * np.pi * days / 7),
            "dow_cos": np.cos(2 * np.pi * days / 7),
            "is_weekend": (days >= 5).astype(float),
        },
        index=index,
    )


def daily_tenant_cost(cost_daily: pd.DataFrame) -> pd.DataFrame:
    """Per tenant and UTC day, the cost in USD (rows of ``fct_llm_cost_daily``).

    Returns:
        Columns ``tenant_id``, ``day`` (datetime64, midnight UTC), ``cost_usd``.
    """
    missing = [c for c in ("tenant_id", "usage_date", "cost_usd") if c not in cost_daily.columns]
    if missing:
        raise ValueError(f"daily cost frame lacks columns {missing}")
    frame = cost_daily.assign(day=pd.to_datetime(cost_daily["usage_date"], utc=True))
    return (
        frame.groupby(["tenant_id", "day"], sort=True)["cost_usd"].sum().astype(float).reset_index()
    )
