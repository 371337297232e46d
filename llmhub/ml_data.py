"""Reading the marts the models train and score on, as DataFrames (shared with assets.publish)."""

from dataclasses import dataclass, field

import pandas as pd
import psycopg
from psycopg import sql

from ml.features import (
    REQUIRED_COLUMNS,
    SECURITY_ALERTS_MODEL,
    SHIFT_INPUTS,
    SeriesKey,
    fill_idle_hours,
    hourly_metrics,
    judged_hours,
    regular_series,
)
from ml.keys import RouteKey

HOURLY_MART = ["marts", "fct_llm_requests_hourly"]
COST_DAILY_MART = ["marts", "fct_llm_cost_daily"]


def read_frame(
    conn: psycopg.Connection, query: str | sql.Composable, params: tuple | dict = ()
) -> pd.DataFrame:
    """The rows of ``query`` as a DataFrame (column names from the cursor)."""
    with conn.cursor() as cur:
        cur.execute(query, params)
        columns = [c.name for c in cur.description or ()]
        return pd.DataFrame(cur.fetchall(), columns=columns)


def read_hourly_mart(conn: psycopg.Connection, hours: int) -> pd.DataFrame:
    """The last ``hours`` complete hours of ``fct_llm_requests_hourly``, counted back from its
    newest complete hour (not from now(): a backfill or a stalled ingestion then still sees
    complete series). The current wall-clock hour is left out: its few minutes of traffic would
    read as a collapse of every series."""
    query = sql.SQL(
        "with complete as (select * from marts.fct_llm_requests_hourly "
        "where request_hour_at < date_trunc('hour', now())) "
        "select {} from complete where request_hour_at > "
        "(select max(request_hour_at) from complete) - make_interval(hours => %s)"
    ).format(sql.SQL(", ").join(map(sql.Identifier, REQUIRED_COLUMNS)))
    frame = read_frame(conn, query, (hours,))
    # Sums come back as Decimal (numeric columns); the models work in floats.
    for column in REQUIRED_COLUMNS[4:]:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    return frame


def busiest_series(
    hourly: pd.DataFrame, metric: str, limit: int, min_points: int
) -> list[tuple[SeriesKey, pd.Series]]:
    """The ``limit`` series of ``metric`` with the most requests, each on a full hourly grid
    over the frame's window, keeping those with at least ``min_points`` hours of history."""
    if hourly.empty:
        return []
    metrics = hourly_metrics(hourly)
    series = [
        (key, values)
        for key, values in regular_series(metrics, [metric])
        if len(values) >= min_points
    ]
    volume = {
        key: float(total)
        for key, total in metrics.groupby(["tenant_id", "asset_id", "request_model"])[
            "request_count"
        ]
        .sum()
        .items()
    }
    series.sort(
        key=lambda item: (
            -volume.get((item[0].tenant_id, item[0].asset_id, item[0].request_model), 0.0),
            item[0],
        )
    )
    return series[:limit]


def series_label(key: SeriesKey) -> str:
    """The series id the detector fleet and its outputs use: the encoded route key, which no
    separator inside an id can make collide (``ml.keys``)."""
    return RouteKey(key.tenant_id, key.asset_id, key.request_model).encode()


@dataclass(frozen=True)
class DetectorInput:
    """The series the detector fleet fits and scores, and which of their hours had traffic.

    Attributes:
        series: per ``(series label, metric)``, gap-free hourly values (``fill_idle_hours``).
        active: per series, ``True`` where the hour is judged; a flag elsewhere is dropped
            (an idle hour's rate is carried forward, not observed, and a rate from fewer than
            ``MIN_RATE_REQUESTS`` requests is no evidence).
        shift_inputs: per (series label, one of ``ml.features.SHIFT_INPUTS``), the raw hourly
            values the shift tests read beside the series, on the route's grid (the mean log
            cost is NaN where nothing was billed); never fitted or scored by the detectors.
    """

    series: dict[tuple[str, str], pd.Series]
    active: dict[tuple[str, str], pd.Series]
    shift_inputs: dict[tuple[str, str], pd.Series] = field(default_factory=dict)


def detector_series(hourly: pd.DataFrame, metrics: list[str], min_points: int) -> DetectorInput:
    """Every (tenant, application, model) series of the frame for each metric, on one hourly
    grid from the route's first request to the frame's end, keeping routes with at least
    ``min_points`` such hours. Shared by the training and the scoring asset, so both see the
    same series."""
    out = DetectorInput({}, {})
    if hourly.empty:
        return out
    metrics_frame = hourly_metrics(hourly)
    first_hour = (
        metrics_frame[metrics_frame["request_count"] > 0]
        .groupby(["tenant_id", "asset_id", "request_model"])["bucket_at"]
        .min()
    )
    requests = {
        (key.tenant_id, key.asset_id, key.request_model): values
        for key, values in regular_series(metrics_frame, ["request_count"])
    }
    for key, values in regular_series(metrics_frame, metrics):
        route = (key.tenant_id, key.asset_id, key.request_model)
        if route not in first_hour.index:
            continue
        since_first = values.loc[first_hour[route] :]
        if len(since_first) < min_points:
            continue
        filled, active = fill_idle_hours(since_first, key.metric)
        judged = judged_hours(active, requests[route].loc[filled.index].to_numpy(), key.metric)
        out.series[(series_label(key), key.metric)] = filled
        out.active[(series_label(key), key.metric)] = pd.Series(judged, index=filled.index)
    routes = {label for label, _ in out.series}
    for key, values in regular_series(metrics_frame, list(SHIFT_INPUTS)):
        label = series_label(key)
        if label in routes:
            route = (key.tenant_id, key.asset_id, key.request_model)
            out.shift_inputs[(label, key.metric)] = values.loc[first_hour[route] :]
    return out


#: Per-application event counts scored beside the request series: metric -> raw table. They
#: carry ``SECURITY_ALERTS_MODEL`` ("*") in place of a model, as in the incident evaluation.
EVENT_COUNT_TABLES: dict[str, str] = {
    "security_alerts": "security_alerts",
    "policy_violations": "policy_violations",
}


def read_event_counts(
    conn: psycopg.Connection, metric: str, start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    """Hourly event counts per (tenant, application) of ``metric``'s raw table, for the hours
    ``[start, end]`` (both hour starts, UTC).

    Returns:
        Columns ``tenant_id``, ``asset_id``, ``bucket_at`` (tz-aware UTC), ``events`` (float).
    """
    table = EVENT_COUNT_TABLES[metric]
    query = sql.SQL(
        "select tenant_id, asset_id, date_trunc('hour', occurred_at) as bucket_at, "
        "count(*) as events from raw.{} where occurred_at >= %s and occurred_at < %s "
        "group by 1, 2, 3"
    ).format(sql.Identifier(table))
    frame = read_frame(
        conn, query, (start.to_pydatetime(), (end + pd.Timedelta(hours=1)).to_pydatetime())
    )
    if frame.empty:
        return pd.DataFrame(columns=["tenant_id", "asset_id", "bucket_at", "events"])
    frame["bucket_at"] = pd.to_datetime(frame["bucket_at"], utc=True)
    frame["events"] = frame["events"].astype(float)
    return frame


def event_count_series(
    counts: pd.DataFrame, metric: str, end: pd.Timestamp
) -> dict[tuple[str, str], pd.Series]:
    """One gap-free hourly series per application of ``read_event_counts`` rows, from its first
    event's hour to ``end`` (an hour without events is a real zero), keyed as the detector
    series are: ``(encoded RouteKey(tenant, application, "*"), metric)``."""
    out: dict[tuple[str, str], pd.Series] = {}
    if counts.empty:
        return out
    end = pd.Timestamp(end).floor("h")
    for (tenant_id, asset_id), group in counts.groupby(["tenant_id", "asset_id"], sort=True):
        grid = pd.date_range(group["bucket_at"].min(), end, freq="h", tz="UTC")
        values = group.set_index("bucket_at")["events"].reindex(grid, fill_value=0.0)
        values.name = metric
        key = RouteKey(str(tenant_id), str(asset_id), SECURITY_ALERTS_MODEL).encode()
        out[(key, metric)] = values.astype(float)
    return out
