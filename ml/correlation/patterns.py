"""Pattern matching: recurrence of a known incident signature ("seen before").

An incident's signature is its root-cause type and entity level plus the metric families of its
anomalies. A new incident whose signature and root-cause entity equal a past incident's is a
recurrence of it; the match is reported on the incident (``seen_before``) and raises the
confidence of its root cause by ``RECURRENCE_BONUS`` (capped at 0.99).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

RECURRENCE_BONUS = 0.05


@dataclass(frozen=True)
class PastIncident:
    incident_id: str
    signature: str
    root_cause_entity: str
    last_seen_at: pd.Timestamp


def signature(root_cause_type: str, families: Iterable[str]) -> str:
    """``<type>|<families sorted, comma-joined>``: the shape of an incident."""
    return f"{root_cause_type}|{','.join(sorted(set(families)))}"


def _unversioned(entity: str) -> str:
    return entity.split("@", 1)[0]


def match(
    sig: str, entity: str, opened_at: pd.Timestamp, library: Iterable[PastIncident]
) -> PastIncident | None:
    """The newest past incident (ended before ``opened_at``) with this signature and entity.

    Versions are ignored in the entity (a prompt rollout that regresses again is the same
    pattern, at another version)."""
    hits = [
        p
        for p in library
        if p.signature == sig
        and _unversioned(p.root_cause_entity) == _unversioned(entity)
        and p.last_seen_at < opened_at
    ]
    return max(hits, key=lambda p: p.last_seen_at, default=None)
