"""Stable incident ids and the open/resolved rule.

Id: the first 16 hex digits of SHA-256 over ``root-cause type | entity | tenant | window-start
bucket`` (the opening hour floored to ``ID_BUCKET``). A re-run over the same data gives the same
ids, so the store upserts instead of duplicating. Late data can move an incident's opening hour
across a bucket boundary; so before hashing, an incident takes the id of a stored incident with
the same root cause and tenant whose span (extended by ``QUIET_PERIOD``) overlaps its own: it is
the same incident, updated.

Status: an incident is ``resolved`` once no member has been seen for ``QUIET_PERIOD`` after the
end of its last member hour (``now >= last_seen_at + 1h + QUIET_PERIOD``); ``resolved_at`` is the
end of that last hour. Otherwise it is ``open``. A resolved incident that gets new members inside
the quiet period of its end is reopened under the same id (the overlap rule above).
"""

from __future__ import annotations

import hashlib

import pandas as pd

ID_BUCKET = pd.Timedelta(hours=6)
QUIET_PERIOD = pd.Timedelta(hours=2)
HOUR = pd.Timedelta(hours=1)


def stable_id(root_cause_type: str, entity: str, tenant_id: str, opened_at: pd.Timestamp) -> str:
    """Deterministic id of an incident (see the module docstring)."""
    bucket = pd.Timestamp(opened_at).floor(ID_BUCKET).isoformat()
    text = f"{root_cause_type}|{entity}|{tenant_id}|{bucket}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def status_at(
    last_seen_at: pd.Timestamp, now: pd.Timestamp, quiet: pd.Timedelta = QUIET_PERIOD
) -> tuple[str, pd.Timestamp | None]:
    """(status, resolved_at) of an incident whose newest member hour is ``last_seen_at``."""
    end = pd.Timestamp(last_seen_at) + HOUR
    if now >= end + quiet:
        return "resolved", end
    return "open", None


def existing_id(
    existing: pd.DataFrame | None,
    root_cause_type: str,
    entity: str,
    tenant_id: str,
    opened_at: pd.Timestamp,
    last_seen_at: pd.Timestamp,
) -> str | None:
    """Id of the stored incident this one continues, if any (earliest opened wins).

    Args:
        existing: stored incidents with ``incident_id, root_cause_type, root_cause_entity,
            tenant_id, opened_at, last_seen_at``.
    """
    if existing is None or existing.empty:
        return None
    same = existing[
        (existing["root_cause_type"] == root_cause_type)
        & (existing["root_cause_entity"] == entity)
        & (existing["tenant_id"] == tenant_id)
        & (existing["opened_at"] <= last_seen_at + HOUR + QUIET_PERIOD)
        & (existing["last_seen_at"] + HOUR + QUIET_PERIOD >= opened_at)
    ]
    if same.empty:
        return None
    return str(same.sort_values("opened_at")["incident_id"].iloc[0])
