"""Hourly aggregation of request and alert rows as the marts compute it, and the series the
detector scores."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pandas as pd

from ml.evaluation.incidents.base import (
    ALERT_COLUMNS,
    HOUR,
    REQUEST_COLUMNS,
    ROUTE_METRICS,
    IncidentEvaluationError,
    SeriesMap,
)
from ml.evaluation.incidents.ground_truth import to_utc
from ml.features import (
    SECURITY_ALERTS,
    SECURITY_ALERTS_MODEL,
    SERIES_COLUMNS,
    ZERO_WHEN_IDLE,
    SeriesKey,
    hourly_metrics,
    regular_series,
)


def require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} frame lacks columns {missing}")


def hourly_requests(requests: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``raw.llm_requests`` aggregated like ``marts.fct_llm_requests_hourly``.

    The mart's grain also holds the asset version and the provider, which ``hourly_metrics``
    sums away; aggregating at (tenant, application, model, hour) directly gives the exact
    percentile where the mart's weighted merge is approximate (a re-registration mid-hour).

    Args:
        requests: columns ``REQUEST_COLUMNS``; ``status`` is ``ok``, ``error`` or
            ``rate_limited``; ``time_to_first_token_ms`` may be missing (embeddings).

    Returns:
        The mart's columns ``ml.features.REQUIRED_COLUMNS`` (``request_hour_at`` tz-aware UTC).
    """
    require_columns(requests, REQUEST_COLUMNS, "request")
    frame = requests.loc[:, list(REQUEST_COLUMNS)]
    hour = pd.to_datetime(frame["occurred_at"], utc=True).dt.floor("h")
    ok = frame["status"] == "ok"
    ttft = pd.to_numeric(frame["time_to_first_token_ms"], errors="coerce")
    cost = pd.to_numeric(frame["cost_usd"]).fillna(0.0)
    latency = pd.to_numeric(frame["latency_ms"])
    work = pd.DataFrame(
        {
            "tenant_id": frame["tenant_id"],
            "asset_id": frame["asset_id"],
            "request_model": frame["request_model"],
            "request_hour_at": hour,
            "is_error": (frame["status"] == "error").astype("int64"),
            "input_tokens": pd.to_numeric(frame["input_tokens"]).fillna(0),
            "output_tokens": pd.to_numeric(frame["output_tokens"]).fillna(0),
            "cost_usd": cost,
            "is_paid": (cost > 0).astype("int64"),
            # ln(cost_usd) filter (where cost_usd > 0): 0 for the unbilled rows.
            "cost_log": np.log(cost.where(cost > 0, 1.0)),
            # percentile_cont ... filter (where is_success): NaN rows are skipped by quantile.
            "latency_ok": pd.to_numeric(frame["latency_ms"]).where(ok),
            "ttft_ok": ttft.where(ok),
            # ln(x) filter (where is_success and x > 0): NaN rows are skipped by sum and count.
            "latency_log": np.log(latency.where(ok & (latency > 0))),
            "ttft_log": np.log(ttft.where(ok & (ttft > 0))),
        }
    )
    groups = work.groupby([*SERIES_COLUMNS, "request_hour_at"], sort=True, observed=True)
    out = groups.agg(
        request_count=("is_error", "size"),
        error_count=("is_error", "sum"),
        input_tokens=("input_tokens", "sum"),
        output_tokens=("output_tokens", "sum"),
        cost_usd=("cost_usd", "sum"),
        paid_request_count=("is_paid", "sum"),
        cost_log_sum=("cost_log", "sum"),
        latency_log_count=("latency_log", "count"),
        latency_log_sum=("latency_log", "sum"),
        time_to_first_token_log_count=("ttft_log", "count"),
        time_to_first_token_log_sum=("ttft_log", "sum"),
    )
    # pandas' default (linear) interpolation is percentile_cont's.
    out["latency_p95_ms"] = groups["latency_ok"].quantile(0.95).round(3)
    out["time_to_first_token_p95_ms"] = groups["ttft_ok"].quantile(0.95).round(3)
    return out.reset_index()


def hourly_security_alerts(alerts: pd.DataFrame) -> pd.DataFrame:
    """Security alerts per (tenant, application, hour) from rows of ``raw.security_alerts``.

    Returns:
        Columns ``tenant_id``, ``asset_id``, ``bucket_at`` (tz-aware UTC), ``security_alerts``.
    """
    require_columns(alerts, ALERT_COLUMNS, "security alert")
    bucket = pd.to_datetime(alerts["occurred_at"], utc=True).dt.floor("h")
    counts = (
        pd.DataFrame(
            {"tenant_id": alerts["tenant_id"], "asset_id": alerts["asset_id"], "bucket_at": bucket}
        )
        .groupby(["tenant_id", "asset_id", "bucket_at"], sort=True, observed=True)
        .size()
    )
    return counts.rename(SECURITY_ALERTS).astype(float).reset_index()


def build_series(
    hourly: pd.DataFrame,
    alerts: pd.DataFrame,
    start: datetime | pd.Timestamp,
    end: datetime | pd.Timestamp,
    metrics: Sequence[str] = ROUTE_METRICS,
) -> SeriesMap:
    """Every route's metric series and every application's alert series on ``[start, end)``.

    Args:
        hourly: mart-shaped rows (``hourly_requests``); rows outside the window are ignored.
        alerts: ``hourly_security_alerts`` rows; rows outside the window are ignored.
        start, end: whole UTC hours.
        metrics: the route metrics to build.

    Returns:
        Raw series on the complete hourly grid: counts and sums 0 when idle, rates and
        percentiles NaN (fill them with ``fill_idle_hours`` before scoring).
    """
    lo, hi = to_utc(start), to_utc(end)
    if lo.floor("h") != lo or hi.floor("h") != hi or hi <= lo:
        raise ValueError(f"window [{lo}, {hi}) must be whole, ordered UTC hours")
    grid = pd.date_range(lo, hi - HOUR, freq="h")
    series: SeriesMap = {}
    routes = hourly_metrics(hourly) if len(hourly) else pd.DataFrame()
    if len(routes):
        routes = routes[(routes["bucket_at"] >= lo) & (routes["bucket_at"] < hi)]
    if len(routes):
        for key, values in regular_series(routes, metrics, start=lo, end=hi - HOUR):
            series[key] = values
    apps = set()
    if len(routes):
        apps |= set(routes[["tenant_id", "asset_id"]].itertuples(index=False, name=None))
    window_alerts = alerts
    if len(alerts):
        window_alerts = alerts[(alerts["bucket_at"] >= lo) & (alerts["bucket_at"] < hi)]
        apps |= set(window_alerts[["tenant_id", "asset_id"]].itertuples(index=False, name=None))
    by_app = (
        dict(iter(window_alerts.groupby(["tenant_id", "asset_id"], sort=True)))
        if len(window_alerts)
        else {}
    )
    for tenant, asset in sorted(apps):
        group = by_app.get((tenant, asset))
        values = (
            group.set_index("bucket_at")[SECURITY_ALERTS].reindex(grid).fillna(0.0)
            if group is not None
            else pd.Series(0.0, index=grid)
        )
        values.name = SECURITY_ALERTS
        series[SeriesKey(tenant, asset, SECURITY_ALERTS_MODEL, SECURITY_ALERTS)] = values
    return series


def align_series(train: SeriesMap, test: SeriesMap) -> tuple[SeriesMap, SeriesMap]:
    """Both windows with the union of their keys: a series absent from a window is idle there."""
    if not train or not test:
        raise IncidentEvaluationError("a window holds no series (no traffic?)")
    out = []
    for own in (train, test):
        grid = next(iter(own.values())).index
        filled = dict(own)
        for key in (train.keys() | test.keys()) - own.keys():
            idle = 0.0 if key.metric in ZERO_WHEN_IDLE or key.metric == SECURITY_ALERTS else np.nan
            filled[key] = pd.Series(idle, index=grid, name=key.metric, dtype=float)
        out.append(dict(sorted(filled.items())))
    return out[0], out[1]
