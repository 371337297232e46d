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
from ml.correlation.cost import (
    Baseline,
    build_baseline,
    excess_cost,
    excess_window,
    window_mask,
)
from ml.correlation.impact import impact_score
from ml.correlation.model import (
    ALL_TENANTS,
    EVENT_COLUMNS,
    SEVERITIES,
    Candidate,
    Cause,
    CostImpact,
    Incident,
    Member,
    Scope,
    family_of,
)
from ml.correlation.performance import chain_of
from ml.correlation.suppression import suppress_expected
from ml.correlation.temporal import as_utc, naive_ns

LOCAL_CONFIDENCE = 0.35
MIN_LOCAL_MEMBERS = 2
FRESH = pd.Timedelta(hours=6)
DECAY = pd.Timedelta(hours=6)
UPSTREAM_HORIZON = pd.Timedelta(hours=3)
ANOMALY_ROW_COLUMNS = (
    "anomaly_key",
    "tenant_id",
    "asset_id",
    "metric",
    "family",
    "observed",
    "expected",
    "score",
    "series_code",
)
EVENT_ROW_COLUMNS = (
    "event_id",
    "tenant_id",
    "asset_id",
    "family",
    "event_type",
    "name",
    "severity",
)


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
    frame["bucket_at"] = as_utc(frame["bucket_at"])
    frame["family"] = frame["metric"].map(family_of)
    # ISO minutes + "Z" (what strftime("%Y-%m-%dT%H:%MZ") writes, at a tenth of its cost).
    stamp = np.datetime_as_string(naive_ns(frame["bucket_at"]), unit="m")
    frame["anomaly_key"] = (
        frame["tenant_id"]
        + "/"
        + frame["asset_id"]
        + "/"
        + frame["request_model"]
        + "/"
        + frame["metric"]
        + "@"
        + pd.Series(stamp, index=frame.index, dtype=object)
        + "Z"
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
    frame["occurred_at"] = as_utc(frame["occurred_at"])
    frame["event_id"] = frame["event_id"].astype(str)
    return frame.reset_index(drop=True)


class _ScopeIndex:
    """The anomalies' scope columns as integer codes, so each cause's scope is an integer
    ``isin`` over codes instead of a string ``isin`` over the frame (one per cause and column)."""

    COLUMNS = (
        ("tenants", "tenant_id"),
        ("assets", "asset_id"),
        ("models", "request_model"),
        ("families", "family"),
    )

    def __init__(self, anomalies: pd.DataFrame) -> None:
        self.size = len(anomalies)
        self.codes: dict[str, np.ndarray] = {}
        self.lookup: dict[str, dict[object, int]] = {}
        for _, column in self.COLUMNS:
            code, uniques = pd.factorize(anomalies[column])
            self.codes[column] = code
            self.lookup[column] = {value: i for i, value in enumerate(uniques)}

    def mask(self, scope: Scope) -> np.ndarray:
        """Same as ``scope.mask(anomalies)``."""
        hit = np.ones(self.size, dtype=bool)
        for attr, column in self.COLUMNS:
            allowed = getattr(scope, attr)
            if allowed is None:
                continue
            lookup = self.lookup[column]
            wanted = [lookup[v] for v in allowed if v in lookup]
            hit &= np.isin(self.codes[column], wanted)
        return hit


def _scores(anomalies: pd.DataFrame, causes: Sequence[Cause]) -> np.ndarray:
    """Score matrix (anomalies x causes), see step 3 of the module docstring."""
    scores = np.zeros((len(anomalies), len(causes)))
    if not len(anomalies):
        return scores
    hours = naive_ns(anomalies["bucket_at"])
    index = _ScopeIndex(anomalies)
    for j, cause in enumerate(causes):
        start = cause.start.tz_convert(None).to_datetime64().astype("datetime64[ns]")
        end = cause.end.tz_convert(None).to_datetime64().astype("datetime64[ns]")
        in_time = (hours >= start) & (hours < end)
        if not in_time.any():
            continue
        hit = index.mask(cause.scope) & in_time
        if not hit.any():
            continue
        late = (hours - start - FRESH.to_timedelta64()) / DECAY.to_timedelta64()
        weight = np.exp(-np.maximum(late.astype(float), 0.0))
        # A narrower scope wins a tie: an application-level change explains its own series
        # better than a tenant- or provider-wide cause of equal confidence.
        bonus = 0.01 * (cause.scope.assets is not None) + 0.005 * (cause.scope.tenants is not None)
        scores[:, j] = np.where(hit, cause.confidence * weight + bonus, 0.0)
    return scores


class _Rows:
    """Columns of a frame as arrays (timestamps as ``pd.Timestamp`` objects and as naive ns):
    an incident's members are array takes, not frame takes (a frame ``iloc`` with a dozen
    columns costs ~0.5 ms, times a few per incident)."""

    def __init__(self, frame: pd.DataFrame, columns: Sequence[str], time_column: str) -> None:
        self.columns = {c: frame[c].to_numpy() for c in columns if c in frame}
        times = frame[time_column]
        self.at = np.empty(len(frame), dtype=object)
        self.at[:] = times.tolist()
        self.ns = naive_ns(times)

    def take(self, rows: np.ndarray) -> _Rows:
        out = object.__new__(_Rows)
        out.columns = {c: v[rows] for c, v in self.columns.items()}
        out.at = self.at[rows]
        out.ns = self.ns[rows]
        return out

    def __len__(self) -> int:
        return len(self.at)

    def __getitem__(self, column: str) -> np.ndarray:
        return self.columns[column]


def _stamp(ns: np.datetime64) -> pd.Timestamp:
    return pd.Timestamp(ns).tz_localize("UTC")


def _severity(anomalies: _Rows, events: _Rows) -> str:
    rank = 1
    if len(anomalies):
        top = 0.0
        if "score" in anomalies.columns:
            score = anomalies["score"].astype(float)
            score = score[~np.isnan(score)]
            top = float(score.max()) if len(score) else float("nan")
        rank = max(rank, 3 if top >= 0.99 else 2 if top >= 0.9 else 1)
    if len(events):
        known = [s for s in events["severity"].tolist() if isinstance(s, str) and s in SEVERITIES]
        if known:
            rank = max(rank, max(SEVERITIES.index(s) for s in known))
    return SEVERITIES[rank]


def _explain(
    cause: Cause,
    anomalies: _Rows,
    events: _Rows,
    chain: tuple[str, ...],
    is_chain: bool,
    cost: CostImpact,
    seen: patterns.PastIncident | None,
) -> str:
    parts = [f"{cause.cause_type.replace('_', ' ')} {cause.entity}: {cause.evidence}."]
    if len(anomalies):
        apps = len(
            set(zip(anomalies["tenant_id"].tolist(), anomalies["asset_id"].tolist(), strict=True))
        )
        first, last = _stamp(anomalies.ns.min()), _stamp(anomalies.ns.max())
        parts.append(
            f"{len(anomalies)} anomalies ({', '.join(sorted(set(anomalies['metric'].tolist())))})"
            f" on {apps} application(s), {first:%H:%M}-"
            f"{last + pd.Timedelta(hours=1):%H:%M}Z."
        )
    if len(events):
        counts = Counter(events["family"].tolist()).most_common()
        parts.append("Events: " + ", ".join(f"{n} {family}" for family, n in counts) + ".")
    if is_chain:
        parts.append("Degradation chain: " + " -> ".join(chain) + ".")
    if cost.excess_usd > 0 and cost.window_start is not None and cost.window_end is not None:
        parts.append(
            f"Excess cost ${cost.excess_usd:,.2f} over {cost.window_start:%H:%M}-"
            f"{cost.window_end:%H:%M}Z."
        )
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
        series = series.assign(bucket_at=as_utc(series["bucket_at"]))
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
    local_rows = local.index.to_numpy()
    local_ns = naive_ns(local["bucket_at"])
    local_tenants, local_assets = local["tenant_id"].to_numpy(), local["asset_id"].to_numpy()
    order = np.argsort(local_labels, kind="stable")
    bounds = np.flatnonzero(np.diff(local_labels[order])) + 1
    for positions in np.split(order, bounds) if len(order) else []:
        rows = local_rows[positions]
        if len(rows) < MIN_LOCAL_MEMBERS:
            unassigned += len(rows)
            continue
        tenant, asset = local_tenants[positions[0]], local_assets[positions[0]]
        local_index[rows] = len(causes) + len(local_causes)
        local_causes.append(
            Cause(
                cause_type="application_anomaly",
                entity=f"{tenant}/{asset}",
                tenant_id=str(tenant),
                start=_stamp(local_ns[positions].min()),
                end=_stamp(local_ns[positions].max()) + pd.Timedelta(hours=1),
                scope=Scope(tenants=frozenset({tenant}), assets=frozenset({asset})),
                confidence=LOCAL_CONFIDENCE,
                rule="temporal",
                evidence=f"{len(rows)} co-occurring anomalies on one application with no "
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
    # Only the claimed events are looked at again: their first row each, as one small frame.
    claimed_rows = np.flatnonzero(events["event_id"].isin(list(event_owner)).to_numpy())
    claimed = events.iloc[claimed_rows]
    first_row: dict[str, int] = {}
    for i, event_id in enumerate(claimed["event_id"].tolist()):
        first_row.setdefault(event_id, i)
    owned: dict[int, list[int]] = {}
    for event_id, j in event_owner.items():
        if event_id in first_row:
            owned.setdefault(j, []).append(first_row[event_id])
    event_rows = _Rows(claimed, EVENT_ROW_COLUMNS, "occurred_at")
    anomaly_rows = _Rows(kept, ANOMALY_ROW_COLUMNS, "bucket_at")
    members_of = np.argsort(owner, kind="stable")
    member_bounds = np.searchsorted(owner[members_of], np.arange(len(all_causes) + 1))

    incidents: list[Incident] = []
    for j, cause in enumerate(all_causes):
        member_rows = members_of[member_bounds[j] : member_bounds[j + 1]]
        member_events = owned.get(j, [])
        if not len(member_rows) and cause.rule in ("causal", "graph"):
            continue
        if not len(member_rows) and not member_events:
            continue
        group = anomaly_rows.take(member_rows)
        ev = event_rows.take(np.sort(np.asarray(member_events, dtype=np.int64)))
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
    group: _Rows,
    ev: _Rows,
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
        order = np.argsort(-mean)
        for k in order[mean[order] > 0]:
            if k == j:
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
    times = [_stamp(group.ns.min()), _stamp(group.ns.max())] if len(group) else []
    if len(ev):
        times += [_stamp(ev.ns.min()).floor("h"), _stamp(ev.ns.max()).floor("h")]
    opened, last = min(times), max(times)
    ev_tenants, ev_assets = ev["tenant_id"], ev["asset_id"]
    tenants = sorted(
        set(group["tenant_id"].tolist()) | set(ev_tenants[~pd.isna(ev_tenants)].tolist())
    )
    assets = sorted(set(group["asset_id"].tolist()) | set(ev_assets[~pd.isna(ev_assets)].tolist()))
    tenant = tenants[0] if len(tenants) == 1 else ALL_TENANTS
    codes = np.unique(group["series_code"]) if len(group) else np.zeros(0, int)
    window_end = last + pd.Timedelta(hours=1)
    # A change cannot cost before it happened; other causes may have begun before their first
    # flagged hour.
    earliest = cause.start if cause.rule in ("causal", "compliance") else None
    cost_start, cost_end = excess_window(baseline, codes, opened, window_end, earliest)
    cost = excess_cost(baseline, codes, cost_start, cost_end)
    affected = 0.0
    if baseline is not None and len(codes):
        affected = float(
            baseline.requests[window_mask(baseline, codes, cost_start, cost_end)].sum()
        )
    elif len(ev):
        affected = float(len(ev))
    chain, is_chain = chain_of(group["family"], group.ns)
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
            group.at.tolist(),
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
            ev.at.tolist(),
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
        explanation=_explain(cause, group, ev, chain, is_chain, cost, seen),
        rules=rules,
        signature=sig,
        seen_before=seen.incident_id if seen else None,
        chain=chain,
    )
