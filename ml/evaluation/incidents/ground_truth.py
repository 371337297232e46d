"""Ground truth of the synthetic incidents: the injected incidents and background bursts
(the generator's JSON)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ml.evaluation.incidents.base import INCIDENT_METRICS


@dataclass(frozen=True)
class IncidentLabel:
    """One ground-truth incident (or rate-limit burst) over ``[start, end)``, UTC, as the
    evaluation grades it (read from the JSON of the generator's ``Incident``).

    ``tenant_id``/``asset_id`` None: every application calling ``model``; ``model`` None: every
    model of the application.
    """

    kind: str
    tenant_id: str | None
    asset_id: str | None
    model: str | None
    metric: str
    start: pd.Timestamp
    end: pd.Timestamp
    magnitude: float | None = None

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> IncidentLabel:
        """Parse one entry of ``SyntheticTraffic.ground_truth()`` (ISO-8601 times)."""
        return cls(
            kind=str(record["kind"]),
            tenant_id=record.get("tenant_id"),
            asset_id=record.get("asset_id"),
            model=record.get("model"),
            metric=str(record["metric"]),
            start=to_utc(record["start"]),
            end=to_utc(record["end"]),
            magnitude=record.get("magnitude"),
        )

    @property
    def target_metric(self) -> str:
        """The series metric that shows this incident."""
        try:
            return INCIDENT_METRICS[self.metric]
        except KeyError:
            known = sorted(INCIDENT_METRICS)
            raise ValueError(
                f"{self.kind}: no series metric for {self.metric!r}; known: {known}"
            ) from None


def incidents_from_ground_truth(
    truth: Mapping[str, Any],
) -> tuple[list[IncidentLabel], list[IncidentLabel]]:
    """The graded incidents and the rate-limit bursts of a ``ground_truth()`` dict."""
    incidents = [IncidentLabel.from_dict(r) for r in truth.get("incidents", [])]
    bursts = [IncidentLabel.from_dict(r) for r in truth.get("rate_limit_bursts", [])]
    return incidents, bursts


def to_utc(value: object) -> pd.Timestamp:
    stamp = pd.Timestamp(value)  # type: ignore[arg-type]
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
