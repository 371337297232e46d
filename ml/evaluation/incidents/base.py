"""Shared definitions."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from ml.anomaly.base import DetectorResult
from ml.features import (
    SECURITY_ALERTS,
    SeriesKey,
)

GRACE_HOURS = 2
HOUR = pd.Timedelta(hours=1)

#: The per-route metrics the detector scores (plus ``SECURITY_ALERTS`` per application).
ROUTE_METRICS: tuple[str, ...] = (
    "request_count",
    "error_rate",
    "latency_p95_ms",
    "tokens",
    "cost_usd",
)
#: Ground-truth metric -> the series metric that shows it.
INCIDENT_METRICS: dict[str, str] = {
    "latency_ms": "latency_p95_ms",
    "cost_usd": "cost_usd",
    "error_rate": "error_rate",
    "security_alerts": SECURITY_ALERTS,
    "request_count": "request_count",
}
#: Columns of ``raw.llm_requests`` the hourly aggregation reads.
REQUEST_COLUMNS: tuple[str, ...] = (
    "occurred_at",
    "tenant_id",
    "asset_id",
    "request_model",
    "status",
    "input_tokens",
    "output_tokens",
    "latency_ms",
    "time_to_first_token_ms",
    "cost_usd",
)
#: Columns of ``raw.security_alerts`` the hourly alert count reads.
ALERT_COLUMNS: tuple[str, ...] = ("occurred_at", "tenant_id", "asset_id")

SeriesMap = dict[SeriesKey, pd.Series]
#: The detection step: (training series, test series) -> one result per test series. The test
#: series follow the training series in time; both are filled (no NaN).
FitScore = Callable[[SeriesMap, SeriesMap], dict[SeriesKey, DetectorResult]]


class IncidentEvaluationError(RuntimeError):
    """The evaluation cannot produce a trustworthy figure (missing results, empty data)."""
