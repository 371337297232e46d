"""The correlation pass: anomalies and events in, incidents out.

1. Flagged anomalies inside their forecast interval are suppressed (``suppression``).
2. Every rule proposes candidate causes: registry changes with a change point (``causal``),
   policy changes with a violation cascade (``compliance``), alert bursts (``security``) and
   provider/model degradations over the entity graph (``graph``, ``temporal``).
3. Each anomaly is scored against each cause: ``confidence * in_scope * in_time``, where in time
   means ``start <= hour < end`` and anomalies later than ``FRESH`` after the cause start decay
   with a ``DECAY`` time constant. An anomaly goes to its best cause when that score beats
   ``LOCAL_CONFIDENCE``; otherwise to a local group (its application within a co-occurrence
   episode). A local group opens an incident only with ``MIN_LOCAL_MEMBERS`` anomalies: one
   anomalous series-hour with nothing corroborating it is left to the anomaly table.
4. Events (the change, the alerts, the violations) go to the cause that proposed them (the most
   confident one when two claim an event).
5. One incident per cause with members: ranked candidates (every cause that scores on any
   member, by its mean score over the members), cost impact (``cost``), degradation chain
   (``performance``), recurrence (``patterns``), impact score (``impact``), stable id and status
   (``lifecycle``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from ml.correlation import causal, compliance, graph, lifecycle, patterns, security
from ml.correlation.cost import Baseline, build_baseline, excess_cost, window_mask
from ml.correlation.impact import impact_score
from ml.correlation.model import (
    ALL_TENANTS,
    EVENT_COLUMNS,
    SEVERITIES,
    Candidate,
    Cause,
    Incident,
    Member,
    Scope,
    family_of,
)
from ml.correlation.performance import degradation_chain
from ml.correlation.suppression import suppress_expected
from ml.correlation.temporal import naive_ns

LOCAL_CONFIDENCE = 0.35
MIN_LOCAL_MEMBERS = 2
FRESH = pd.Timedelta(hours=6)
DECAY = pd.Timedelta(hours=6)
UPSTREAM_HORIZON = pd.Timedelta(hours=3)


@dataclass
class CorrelationResult:
    """Output of one pass."""

    incidents: list[Incident]
    suppressed: int
    causes: list[Cause]
    unassigned: int
    assignment: pd.DataFrame = field(default_factory=pd.DataFrame)


def prepare_anomalies(anomalies: pd.DataFrame) -> pd.DataFrame:
    """Flagged anomalies with ``family`` and ``anomaly_key``, times as UTC timestamps."""
    frame = anomalies
    if "is_anomaly" in frame:
        frame = frame[frame["is_anomaly"].astype(bool)]
    frame = frame.reset_index(drop=True).copy()
    frame["bucket_at"] = pd.to_datetime(frame["bucket_at"], utc=True)
    frame["family"] = frame["metric"].map(family_of)
    frame["anomaly_key"] = (
        frame["tenant_id"]
        + "/"
        + frame["asset_id"]
        + "/"
        + frame["request_model"]
        + "/"
        + frame["metric"]
        + "@"
        + frame["bucket_at"].dt.strftime("%Y-%m-%dT%H:%MZ")
    )
    return frame


def prepare_events(events: pd.DataFrame | None) -> pd.DataFrame:
    """The events frame with every ``EVENT_COLUMNS`` column (missing ones None), UTC times."""
    if events is None:
        events = pd.DataFrame(columns=EVENT_COLUMNS)
    frame = events.copy()
    for column in [*EVENT_COLUMNS, "change", "severity"]:
        if column not in frame:
            frame[column] = None
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True)
    frame["event_id"] = frame["event_id"].astype(str)
    return frame.reset_index(drop=True)


def _scores(anomalies: pd.DataFrame, causes: Sequence[Cause]) -> np.ndarray:
    """Score matrix (anomalies x causes), see step 3 of the module docstring."""
    scores = np.zeros((len(anomalies), len(causes)))
    if not len(anomalies):
        return scores
    hours = naive_ns(anomalies["bucket_at"])
    for j, cause in enumerate(causes):
        start = cause.start.tz_convert(None).to_datetime64().astype("datetime64[ns]")
        end = cause.end.tz_convert(None).to_datetime64().astype("datetime64[ns]")
        hit = cause.scope.mask(anomalies) & (hours >= start) & (hours < end)
        if not hit.any():
            continue
        late = (hours - start - FRESH.to_timedelta64()) / DECAY.to_timedelta64()
        weight = np.exp(-np.maximum(late.astype(float), 0.0))
        # A narrower scope wins a tie: an application-level change explains its own series
        # better than a tenant- or provider-wide cause of equal confidence.
        bonus = 0.01 * (cause.scope.assets is not None) + 0.005 * (cause.scope.tenants is not None)
        scores[:, j] = np.where(hit, cause.confidence * weight + bonus, 0.0)
    return scores


def _severity(anomalies: pd.DataFrame, events: pd.DataFrame) -> str:
    rank = 1
    if len(anomalies):
        top = float(anomalies["score"].max()) if "score" in anomalies else 0.0
        rank = max(rank, 3 if top >= 0.99 else 2 if top >= 0.9 else 1)
    if len(events):
        known = events["severity"].dropna()
        known = known[known.isin(SEVERITIES)]
        if len(known):
            rank = max(rank, max(SEVERITIES.index(s) for s in known))
    return SEVERITIES[rank]


def _explain(
    cause: Cause,
    anomalies: pd.DataFrame,
    events: pd.DataFrame,
    chain: tuple[str, ...],
    is_chain: bool,
    excess: float,
    seen: patterns.PastIncident | None,
) -> str:
    parts = [f"{cause.cause_type.replace('_', ' ')} {cause.entity}: {cause.evidence}."]
    if len(anomalies):
        apps = len(
            set(zip(anomalies["tenant_id"].tolist(), anomalies["asset_id"].tolist(), strict=True))
        )
        parts.append(
            f"{len(anomalies)} anomalies ({', '.join(sorted(set(anomalies['metric'].tolist())))})"
            f" on {apps} application(s), {anomalies['bucket_at'].min():%H:%M}-"
            f"{anomalies['bucket_at'].max() + pd.Timedelta(hours=1):%H:%M}Z."
        )
    if len(events):
        counts = Counter(events["family"].tolist()).most_common()
        parts.append("Events: " + ", ".join(f"{n} {family}" for family, n in counts) + ".")
    if is_chain:
        parts.append("Degradation chain: " + " -> ".join(chain) + ".")
    if excess > 0:
        parts.append(f"Excess cost ${excess:,.2f}.")
    if seen is not None:
        parts.append(f"Seen before: incident {seen.incident_id}.")
    return " ".join(parts)


def correlate(
    anomalies: pd.DataFrame,
    events: pd.DataFrame | None,
    providers: dict[str, str],
    series: pd.DataFrame | None = None,
    forecasts: pd.DataFrame | None = None,
    now: pd.Timestamp | None = None,
    existing: pd.DataFrame | None = None,
    library: Iterable[patterns.PastIncident] = (),
) -> CorrelationResult:
    """One correlation pass (see the module docstring).

    Args:
        anomalies: ``analytics.anomalies`` rows (flagged ones are used).
        events: registry, security and policy events (``ml.correlation.model``).
        providers: model name -> provider name.
        series: hourly request series (change points, cost, affected requests); optional.
        forecasts: forecast rows per series (suppression, cost baseline); optional.
        now: the pass's clock for the status rule; default the newest anomaly or event hour + 1h.
        existing: stored incidents to continue (ids reused, see ``lifecycle``).
        library: past incidents for "seen before".

    Returns:
        The incidents, sorted by impact score (highest first).
    """
    flagged = prepare_anomalies(anomalies)
    kept, suppressed = suppress_expected(flagged, forecasts)
    kept = kept.reset_index(drop=True)
    events = prepare_events(events)
    if series is not None:
        series = series.copy()
        series["bucket_at"] = pd.to_datetime(series["bucket_at"], utc=True)
    if now is None:
        newest = [kept["bucket_at"].max() if len(kept) else pd.NaT]
        newest.append(events["occurred_at"].max() if len(events) else pd.NaT)
        valid = [t for t in newest if pd.notna(t)]
        now = (max(valid) + pd.Timedelta(hours=1)) if valid else pd.Timestamp.now(tz="UTC")

    causes: list[Cause] = [
        *causal.registry_causes(events, series),
        *compliance.compliance_causes(events),
        *security.security_causes(events),
        *graph.upstream_causes(kept, providers, UPSTREAM_HORIZON),
    ]
    baseline = None
    if series is not None and not series.empty and len(kept):
        baseline = build_baseline(series, kept["bucket_at"].min(), forecasts)
    kept["series_code"] = baseline.codes_for(kept) if baseline is not None else -1
    scores = _scores(kept, causes)
    best = scores.argmax(axis=1) if causes else np.zeros(len(kept), dtype=int)
    best_score = scores.max(axis=1) if causes else np.zeros(len(kept))
    assigned = np.where(best_score > LOCAL_CONFIDENCE, best, -1)

    local = kept[assigned < 0]
    local_labels = graph.local_groups(local)
    local_causes: list[Cause] = []
    local_index = np.full(len(kept), -1)
    unassigned = 0
    for label in np.unique(local_labels):
        rows = local.index[local_labels == label]
        if len(rows) < MIN_LOCAL_MEMBERS:
            unassigned += len(rows)
            continue
        group = kept.loc[rows]
        tenant, asset = group["tenant_id"].iloc[0], group["asset_id"].iloc[0]
        local_index[rows] = len(causes) + len(local_causes)
        local_causes.append(
            Cause(
                cause_type="application_anomaly",
                entity=f"{tenant}/{asset}",
                tenant_id=str(tenant),
                start=group["bucket_at"].min(),
                end=group["bucket_at"].max() + pd.Timedelta(hours=1),
                scope=Scope(tenants=frozenset({tenant}), assets=frozenset({asset})),
                confidence=LOCAL_CONFIDENCE,
                rule="temporal",
                evidence=f"{len(group)} co-occurring anomalies on one application with no "
                "upstream change, alert burst or shared provider degradation",
            )
        )
    all_causes = causes + local_causes
    owner = np.where(assigned >= 0, assigned, local_index)

    # Events: the most confident claiming cause takes each event.
    event_owner: dict[str, int] = {}
    for j in sorted(range(len(all_causes)), key=lambda k: all_causes[k].confidence):
        for event_id in all_causes[j].event_ids:
            event_owner[event_id] = j
    position = pd.Series(np.arange(len(events)), index=events["event_id"].to_numpy())
    position = position[~position.index.duplicated()]
    owned: dict[int, list[str]] = {}
    for event_id, j in event_owner.items():
        owned.setdefault(j, []).append(event_id)

    incidents: list[Incident] = []
    for j, cause in enumerate(all_causes):
        member_rows = np.flatnonzero(owner == j)
        member_events = owned.get(j, [])
        if not len(member_rows) and cause.rule in ("causal", "graph"):
            continue
        if not len(member_rows) and not member_events:
            continue
        group = kept.iloc[member_rows]
        rows = position.reindex(member_events).dropna().astype(int).to_numpy()
        ev = events.iloc[np.sort(rows)]
        incidents.append(
            _incident(
                cause,
                j,
                all_causes,
                scores,
                member_rows,
                group,
                ev,
                baseline,
                now,
                existing,
                library,
            )
        )
    incidents.sort(key=lambda i: -i.impact_score)
    assignment = kept[["anomaly_key"]].assign(
        cause=[all_causes[k].key if k >= 0 else None for k in owner]
    )
    return CorrelationResult(
        incidents=incidents,
        suppressed=len(suppressed),
        causes=all_causes,
        unassigned=unassigned,
        assignment=assignment,
    )


def _incident(
    cause: Cause,
    j: int,
    all_causes: list[Cause],
    scores: np.ndarray,
    member_rows: np.ndarray,
    group: pd.DataFrame,
    ev: pd.DataFrame,
    baseline: Baseline | None,
    now: pd.Timestamp,
    existing: pd.DataFrame | None,
    library: Iterable[patterns.PastIncident],
) -> Incident:
    candidates = [
        Candidate(cause.cause_type, cause.entity, cause.confidence, cause.rule, cause.evidence)
    ]
    if len(member_rows):
        mean = scores[member_rows].mean(axis=0)
        for k in np.argsort(-mean):
            if k == j or k >= len(mean) or mean[k] <= 0:
                continue
            other = all_causes[k]
            candidates.append(
                Candidate(
                    other.cause_type,
                    other.entity,
                    round(float(mean[k]), 4),
                    other.rule,
                    other.evidence,
                )
            )
    times = [group["bucket_at"].min(), group["bucket_at"].max()] if len(group) else []
    if len(ev):
        times += [ev["occurred_at"].min().floor("h"), ev["occurred_at"].max().floor("h")]
    opened, last = min(times), max(times)
    tenants = sorted(set(group["tenant_id"].tolist()) | set(ev["tenant_id"].dropna().tolist()))
    assets = sorted(set(group["asset_id"].tolist()) | set(ev["asset_id"].dropna().tolist()))
    tenant = tenants[0] if len(tenants) == 1 else ALL_TENANTS
    codes = np.unique(group["series_code"].to_numpy()) if len(group) else np.zeros(0, int)
    window_end = last + pd.Timedelta(hours=1)
    cost = excess_cost(baseline, codes, opened, window_end)
    affected = 0.0
    if baseline is not None and len(codes):
        affected = float(baseline.requests[window_mask(baseline, codes, opened, window_end)].sum())
    elif len(ev):
        affected = float(len(ev))
    chain, is_chain = degradation_chain(group)
    sig = patterns.signature(cause.cause_type, group["family"] if len(group) else ev["family"])
    seen = patterns.match(sig, cause.entity, opened, library)
    confidence = cause.confidence
    if seen is not None:
        confidence = min(0.99, confidence + patterns.RECURRENCE_BONUS)
        candidates[0] = replace(candidates[0], confidence=round(confidence, 4))
    severity = _severity(group, ev)
    duration_h = (window_end - opened) / pd.Timedelta(hours=1)
    score = impact_score(affected, cost.excess_usd, duration_h, len(tenants), len(assets), severity)
    incident_id = lifecycle.existing_id(
        existing, cause.cause_type, cause.entity, tenant, opened, last
    ) or lifecycle.stable_id(cause.cause_type, cause.entity, tenant, opened)
    status, resolved_at = lifecycle.status_at(last, now)
    members = [
        Member("anomaly", key, at, t, a, f"{metric} {obs:.4g} vs {exp:.4g}")
        for key, at, t, a, metric, obs, exp in zip(
            group["anomaly_key"].tolist(),
            group["bucket_at"].tolist(),
            group["tenant_id"].tolist(),
            group["asset_id"].tolist(),
            group["metric"].tolist(),
            group["observed"].tolist(),
            group["expected"].tolist(),
            strict=True,
        )
    ] + [
        Member("event", key, at, t, a, f"{family} {etype} {name}")
        for key, at, t, a, family, etype, name in zip(
            ev["event_id"].tolist(),
            ev["occurred_at"].tolist(),
            ev["tenant_id"].tolist(),
            ev["asset_id"].tolist(),
            ev["family"].tolist(),
            ev["event_type"].tolist(),
            ev["name"].tolist(),
            strict=True,
        )
    ]
    rules = tuple(
        sorted(
            {cause.rule}
            | ({"performance"} if is_chain else set())
            | ({"patterns"} if seen else set())
            | ({"cost"} if cost.excess_usd > 0 else set())
        )
    )
    return Incident(
        incident_id=incident_id,
        tenant_id=tenant,
        tenant_ids=tuple(tenants),
        asset_ids=tuple(assets),
        opened_at=opened,
        last_seen_at=last,
        resolved_at=resolved_at,
        status=status,
        severity=severity,
        root_cause_type=cause.cause_type,
        root_cause_entity=cause.entity,
        confidence=round(confidence, 4),
        candidates=candidates,
        members=members,
        affected_requests=affected,
        cost=cost,
        impact_score=score,
        explanation=_explain(cause, group, ev, chain, is_chain, cost.excess_usd, seen),
        rules=rules,
        signature=sig,
        seen_before=seen.incident_id if seen else None,
        chain=chain,
    )
