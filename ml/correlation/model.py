"""Frames the engine reads and the dataclasses it returns.

Input frames (pandas, timestamps tz-aware UTC):

- anomalies: ``bucket_at, tenant_id, asset_id, request_model, metric, observed, expected,
  score, is_anomaly`` (the columns of ``analytics.anomalies``); only flagged rows are used.
- events: ``event_id, occurred_at, family, event_type, tenant_id, asset_id, name, version,
  asset_kind, model, provider, user_id`` with ``family`` one of ``registry`` (registry_events),
  ``security`` (security_alerts; ``name`` = alert_type) or ``policy`` (policy_violations;
  ``name`` = policy_id). Missing optional columns are filled with None.
- series: hourly ``bucket_at, tenant_id, asset_id, request_model, request_count, tokens,
  cost_usd, error_rate, latency_p95_ms`` (the request mart), for change points and cost.
- forecasts: ``tenant_id, asset_id, request_model, metric, target_at, yhat, yhat_lower,
  yhat_upper`` (``analytics.forecasts`` split by series).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

SERIES_KEY = ["tenant_id", "asset_id", "request_model"]
ANOMALY_COLUMNS = [*SERIES_KEY, "bucket_at", "metric", "observed", "expected", "score"]
EVENT_COLUMNS = [
    "event_id",
    "occurred_at",
    "family",
    "event_type",
    "tenant_id",
    "asset_id",
    "name",
    "version",
    "asset_kind",
    "model",
    "provider",
    "user_id",
]
ALL_TENANTS = "*"

#: Metric families: a provider outage shows in latency and errors, a prompt change in spend.
METRIC_FAMILY = {
    "latency_p95_ms": "latency",
    "latency_avg_ms": "latency",
    "error_rate": "errors",
    "rate_limited_rate": "errors",
    "request_count": "volume",
    "tokens": "spend",
    "cost_usd": "spend",
}
SEVERITIES = ("info", "low", "medium", "high", "critical")


def factorize_rows(frame: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Codes of the distinct ``columns`` tuples of ``frame`` (numbered in order of first
    appearance, as ``pd.factorize`` of the tuples) and the row position of each code's first row.

    Factorizing column by column and combining the integer codes avoids materialising a
    MultiIndex of Python tuples (~15 ms per 6,000 rows, the largest cost of building the panels).
    """
    combined = np.zeros(len(frame), dtype=np.int64)
    size = 1
    for column in columns:
        code, uniques = pd.factorize(frame[column], use_na_sentinel=False)
        if size * (len(uniques) + 1) >= 2**62:
            combined = pd.factorize(combined)[0].astype(np.int64)
            size = int(combined.max(initial=0)) + 1
        combined = combined * (len(uniques) + 1) + code
        size *= len(uniques) + 1
    combined = pd.factorize(combined)[0].astype(np.int64)
    _, first = np.unique(combined, return_index=True)
    return combined, first


def family_of(metric: str) -> str:
    """Family of ``metric`` (unknown metrics are their own family)."""
    return METRIC_FAMILY.get(metric, metric)


@dataclass(frozen=True)
class Scope:
    """Which anomalies a cause can explain; None means any."""

    tenants: frozenset[str] | None = None
    assets: frozenset[str] | None = None
    models: frozenset[str] | None = None
    families: frozenset[str] | None = None

    def mask(self, anomalies: pd.DataFrame) -> np.ndarray:
        """Boolean mask of the ``anomalies`` rows inside the scope."""
        hit = np.ones(len(anomalies), dtype=bool)
        for column, allowed in (
            ("tenant_id", self.tenants),
            ("asset_id", self.assets),
            ("request_model", self.models),
            ("family", self.families),
        ):
            if allowed is not None:
                hit &= anomalies[column].isin(allowed).to_numpy()
        return hit


@dataclass(frozen=True)
class Cause:
    """A candidate root cause proposed by one rule.

    ``start``/``end`` bound the anomalies it can explain (``end`` exclusive); ``event_ids`` are
    the events that are part of the cause itself (the registry change, the alerts of a burst).
    """

    cause_type: str
    entity: str
    tenant_id: str
    start: pd.Timestamp
    end: pd.Timestamp
    scope: Scope
    confidence: float
    rule: str
    evidence: str
    event_ids: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.cause_type}:{self.entity}"


@dataclass(frozen=True)
class Candidate:
    """A ranked candidate cause of an incident."""

    cause_type: str
    entity: str
    confidence: float
    rule: str
    evidence: str


@dataclass(frozen=True)
class Member:
    """An anomaly (series-hour-metric) or an event that belongs to an incident."""

    kind: str  # "anomaly" | "event"
    member_key: str
    at: pd.Timestamp
    tenant_id: str
    asset_id: str | None
    detail: str


@dataclass(frozen=True)
class CostImpact:
    """Excess cost of an incident in USD and its split (the three parts sum to ``excess_usd``)."""

    observed_usd: float
    expected_usd: float
    upper_usd: float
    excess_usd: float
    volume_usd: float
    tokens_per_request_usd: float
    price_mix_usd: float
    baseline: str
    #: The priced window ``[window_start, window_end)`` (``cost.excess_window``); None when
    #: nothing was priced.
    window_start: pd.Timestamp | None = None
    window_end: pd.Timestamp | None = None

    @staticmethod
    def zero(baseline: str = "none") -> CostImpact:
        return CostImpact(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, baseline)


@dataclass
class Incident:
    """One incident: a root cause, its evidence, its members and its price."""

    incident_id: str
    tenant_id: str
    tenant_ids: tuple[str, ...]
    asset_ids: tuple[str, ...]
    opened_at: pd.Timestamp
    last_seen_at: pd.Timestamp
    resolved_at: pd.Timestamp | None
    status: str
    severity: str
    root_cause_type: str
    root_cause_entity: str
    confidence: float
    candidates: list[Candidate]
    members: list[Member]
    affected_requests: float
    cost: CostImpact
    impact_score: float
    explanation: str
    rules: tuple[str, ...] = ()
    signature: str = ""
    seen_before: str | None = None
    chain: tuple[str, ...] = field(default_factory=tuple)
