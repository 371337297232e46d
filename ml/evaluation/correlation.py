"""Evaluation of the correlation engine against scenarios with ground truth.

Input per seed: the frames one scenario day produces (flagged anomalies, events, series,
forecasts) and its ground truth (``llmhub.producers.scenarios``: each scenario's root cause,
member series-metrics with their window, member event ids, true excess cost). Pure: frames and
dicts in, dataclasses out.

Items. A flagged anomaly belongs to scenario S when its ``tenant/asset/model/metric`` is one of
S's members and its hour lies in ``[start, end + 1h)`` (one hour of detection lag); an event
belongs to S when S lists its id. Items of no scenario are background.

- **AC@k** (root-cause accuracy, as the RCA literature defines it): the share of scenarios that
  expect an incident whose matched incident (the one holding most of its items) ranks the true
  root cause (type and entity) among its first k candidates; a scenario with no incident counts
  as a miss.
- **Grouping**: pairwise precision / recall / F1 over the items of the scenarios that expect an
  incident: a pair is predicted together when both sit in one incident, truly together when both
  belong to one scenario (items in no incident are singletons).
- **False incidents per day**: incidents holding no item of a scenario that expects one (noise,
  an expected spike that was not suppressed, a harmless registry change that was blamed), per
  scenario day.
- **Excess-cost error**: |estimated - true| / true, per scenario whose true excess is at least
  ``MIN_COST_USD`` (below that, a few cents of noise make a relative error meaningless); the
  headline figure is the cost-weighted error ``sum |est - true| / sum true``.

Baseline (BARO-style). The same candidate causes (every cause the rules propose, plus one
application cause per application with items) ranked by the largest robust z-score jump in their
scope: per series-metric, the scenario window's largest ``|x - median| / (1.4826 MAD)`` against
the 24 hours before it; security and compliance candidates by the jump of their event counts.
The baseline is given the true grouping (its job is only ranking).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ml.correlation.engine import CorrelationResult, correlate, prepare_anomalies, prepare_events
from ml.correlation.model import Cause, Scope

MIN_COST_USD = 1.0
LAG = pd.Timedelta(hours=1)
BARO_METRICS = ["request_count", "tokens", "cost_usd", "error_rate", "latency_p95_ms"]


@dataclass
class ScenarioOutcome:
    scenario_id: str
    kind: str
    true_cause: str
    expects_incident: bool
    items: int
    incident_id: str | None
    rank: int | None
    baseline_rank: int | None
    excess_true: float
    excess_estimated: float | None


@dataclass
class SeedResult:
    seed: int
    outcomes: list[ScenarioOutcome]
    pairs: dict[str, tuple[int, int, int]]  # kind -> (together both, predicted, true)
    false_incidents: int
    incidents: int
    suppressed: int
    days: float
    pass_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def label_items(
    anomalies: pd.DataFrame, events: pd.DataFrame, scenarios: Sequence[dict[str, Any]]
) -> dict[str, str]:
    """Item key (anomaly_key or event id) -> scenario id, for items of a scenario."""
    labels: dict[str, str] = {}
    series_metric = (
        anomalies["tenant_id"]
        + "/"
        + anomalies["asset_id"]
        + "/"
        + anomalies["request_model"]
        + "/"
        + anomalies["metric"]
    )
    for s in scenarios:
        start, end = pd.Timestamp(s["start"]), pd.Timestamp(s["end"]) + LAG
        hit = (
            series_metric.isin(set(s["members"]))
            & (anomalies["bucket_at"] >= start)
            & (anomalies["bucket_at"] < end)
        )
        for key in anomalies.loc[hit, "anomaly_key"]:
            labels.setdefault(key, s["scenario_id"])
        for event_id in s["event_ids"]:
            labels.setdefault(str(event_id), s["scenario_id"])
    return labels


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def pair_counts(truth: dict[str, str], predicted: dict[str, str]) -> tuple[int, int, int]:
    """(pairs together in both, pairs predicted together, pairs truly together) over the keys
    of ``truth``; a key missing from ``predicted`` is a singleton."""
    cells: Counter[tuple[str, str]] = Counter()
    pred_sizes: Counter[str] = Counter()
    true_sizes: Counter[str] = Counter()
    for key, scenario in truth.items():
        incident = predicted.get(key, f"singleton:{key}")
        cells[(scenario, incident)] += 1
        pred_sizes[incident] += 1
        true_sizes[scenario] += 1
    return (
        sum(_pairs(n) for n in cells.values()),
        sum(_pairs(n) for n in pred_sizes.values()),
        sum(_pairs(n) for n in true_sizes.values()),
    )


def _robust_jump(values: np.ndarray, pre: np.ndarray) -> float:
    if len(values) == 0 or len(pre) < 3:
        return 0.0
    med = float(np.median(pre))
    mad = 1.4826 * float(np.median(np.abs(pre - med)))
    scale = max(mad, 0.02 * abs(med), 1e-9)
    return float(np.max(np.abs(values - med)) / scale)


def baro_scores(
    candidates: Sequence[Cause],
    series: pd.DataFrame,
    events: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> list[float]:
    """Robust z-score jump of each candidate's scope in ``[start, end)`` (see module doc)."""
    pre_start = start - pd.Timedelta(hours=24)
    near = series[(series["bucket_at"] >= pre_start) & (series["bucket_at"] < end)]
    near = near.assign(family="")
    hourly_events = events.assign(hour=events["occurred_at"].dt.floor("h"))
    hourly_events = hourly_events[
        (hourly_events["hour"] >= pre_start) & (hourly_events["hour"] < end)
    ]
    out = []
    for cause in candidates:
        if cause.rule in ("security", "compliance"):
            family = "security" if cause.rule == "security" else "policy"
            ev = hourly_events[hourly_events["family"] == family]
            ev = ev[
                Scope(tenants=cause.scope.tenants, assets=cause.scope.assets).mask(
                    ev.assign(request_model="", family="")
                )
            ]
            counts = (
                ev.groupby("hour")
                .size()
                .reindex(
                    pd.date_range(pre_start, end - pd.Timedelta(hours=1), freq="h"), fill_value=0
                )
            )
            is_pre = counts.index < start
            out.append(
                _robust_jump(counts[~is_pre].to_numpy(float), counts[is_pre].to_numpy(float))
            )
            continue
        rows = near[Scope(cause.scope.tenants, cause.scope.assets, cause.scope.models).mask(near)]
        best = 0.0
        for _, one in rows.groupby(["tenant_id", "asset_id", "request_model"]):
            is_pre = (one["bucket_at"] < start).to_numpy()
            for metric in BARO_METRICS:
                v = one[metric].to_numpy(float)
                best = max(best, _robust_jump(v[~is_pre], v[is_pre]))
        out.append(best)
    return out


def _rank(candidates: Sequence[tuple[str, str]], truth: str) -> int | None:
    for i, (cause_type, entity) in enumerate(candidates, start=1):
        if f"{cause_type}:{entity}" == truth:
            return i
    return None


def evaluate_seed(
    seed: int,
    anomalies: pd.DataFrame,
    events: pd.DataFrame,
    series: pd.DataFrame,
    forecasts: pd.DataFrame,
    providers: dict[str, str],
    scenarios: Sequence[dict[str, Any]],
    days: float = 1.0,
    result: CorrelationResult | None = None,
) -> SeedResult:
    """Run the engine on one seed's frames (unless ``result`` is given) and grade it."""
    import time

    started = time.perf_counter()
    if result is None:
        result = correlate(anomalies, events, providers, series=series, forecasts=forecasts)
    elapsed = time.perf_counter() - started
    flagged = prepare_anomalies(anomalies)
    events = prepare_events(events)
    truth = label_items(flagged, events, scenarios)
    by_id = {s["scenario_id"]: s for s in scenarios}
    expected_items = {k: v for k, v in truth.items() if by_id[v]["expects_incident"]}
    predicted: dict[str, str] = {}
    for incident in result.incidents:
        for member in incident.members:
            predicted[member.member_key] = incident.incident_id
    incidents = {i.incident_id: i for i in result.incidents}

    false = sum(
        1 for i in result.incidents if not any(m.member_key in expected_items for m in i.members)
    )
    pairs: dict[str, tuple[int, int, int]] = {}
    kinds = {s["kind"] for s in scenarios if s["expects_incident"]}
    for kind in sorted(kinds):
        sub = {k: v for k, v in expected_items.items() if by_id[v]["kind"] == kind}
        pairs[kind] = pair_counts(sub, predicted)
    pairs["overall"] = pair_counts(expected_items, predicted)

    outcomes = []
    for s in scenarios:
        items = [k for k, v in truth.items() if v == s["scenario_id"]]
        votes = Counter(predicted[k] for k in items if k in predicted)
        incident = incidents[votes.most_common(1)[0][0]] if votes else None
        true_cause = f"{s['root_cause_type']}:{s['root_cause_entity']}"
        rank = baseline_rank = None
        estimated = None
        if s["expects_incident"]:
            if incident is not None:
                rank = _rank([(c.cause_type, c.entity) for c in incident.candidates], true_cause)
                estimated = incident.cost.excess_usd
            candidates = [c for c in result.causes if c.rule != "temporal"]
            apps = {(k.split("/")[0], k.split("/")[1]) for k in items if "@" in k} | {
                (t, a)
                for t, a in events.loc[
                    events["event_id"].isin(items), ["tenant_id", "asset_id"]
                ].itertuples(index=False)
            }
            for tenant, asset in sorted(apps):
                candidates.append(
                    Cause(
                        "application_anomaly",
                        f"{tenant}/{asset}",
                        tenant,
                        pd.Timestamp(s["start"]),
                        pd.Timestamp(s["end"]),
                        Scope(frozenset({tenant}), frozenset({asset})),
                        0.0,
                        "temporal",
                        "",
                    )
                )
            z = baro_scores(
                candidates, series, events, pd.Timestamp(s["start"]), pd.Timestamp(s["end"])
            )
            order = sorted(range(len(candidates)), key=lambda i: -z[i])
            baseline_rank = _rank(
                [(candidates[i].cause_type, candidates[i].entity) for i in order], true_cause
            )
        outcomes.append(
            ScenarioOutcome(
                scenario_id=s["scenario_id"],
                kind=s["kind"],
                true_cause=true_cause,
                expects_incident=bool(s["expects_incident"]),
                items=len(items),
                incident_id=incident.incident_id if incident else None,
                rank=rank,
                baseline_rank=baseline_rank,
                excess_true=float(s["excess_cost_usd"]),
                excess_estimated=estimated,
            )
        )
    return SeedResult(
        seed=seed,
        outcomes=outcomes,
        pairs=pairs,
        false_incidents=false,
        incidents=len(result.incidents),
        suppressed=result.suppressed,
        days=days,
        pass_seconds=elapsed,
    )


def _prf(both: int, predicted: int, true: int) -> dict[str, float | None]:
    p = both / predicted if predicted else None
    r = both / true if true else None
    f = 2 * p * r / (p + r) if p and r else (0.0 if p is not None and r is not None else None)
    return {"precision": _round(p), "recall": _round(r), "f1": _round(f)}


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def _accuracy(outcomes: Sequence[ScenarioOutcome], attr: str) -> dict[str, float | None]:
    graded = [o for o in outcomes if o.expects_incident]
    if not graded:
        return {"ac@1": None, "ac@3": None}
    ranks = [getattr(o, attr) for o in graded]
    return {
        "ac@1": _round(sum(1 for r in ranks if r == 1) / len(ranks)),
        "ac@3": _round(sum(1 for r in ranks if r is not None and r <= 3) / len(ranks)),
    }


def _cost(
    outcomes: Sequence[ScenarioOutcome], min_cost_usd: float = MIN_COST_USD
) -> dict[str, float | int | None]:
    priced = [o for o in outcomes if o.expects_incident and o.excess_true >= min_cost_usd]
    if not priced:
        return {"scenarios": 0, "weighted_error": None, "median_error": None}
    errors = [abs((o.excess_estimated or 0.0) - o.excess_true) / o.excess_true for o in priced]
    total = sum(o.excess_true for o in priced)
    weighted = sum(abs((o.excess_estimated or 0.0) - o.excess_true) for o in priced) / total
    return {
        "scenarios": len(priced),
        "weighted_error": _round(weighted),
        "median_error": _round(float(np.median(errors))),
    }


def summarize(results: Sequence[SeedResult], min_cost_usd: float = MIN_COST_USD) -> dict[str, Any]:
    """Overall and per-scenario-type figures over every seed (see the module docstring).

    ``min_cost_usd``: the smallest true excess whose relative error is graded (scaled with the
    traffic when a world runs at a fraction of the default volume, as the pipeline mode does).
    """
    outcomes = [o for r in results for o in r.outcomes]
    pairs: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in results:
        for kind, counts in r.pairs.items():
            for i, n in enumerate(counts):
                pairs[kind][i] += n
    days = sum(r.days for r in results)
    per_type = {}
    for kind in sorted({o.kind for o in outcomes}):
        mine = [o for o in outcomes if o.kind == kind]
        entry: dict[str, Any] = {"scenarios": len(mine)}
        if any(o.expects_incident for o in mine):
            entry.update(
                {
                    "engine": _accuracy(mine, "rank"),
                    "baro_baseline": _accuracy(mine, "baseline_rank"),
                    "grouping": _prf(*pairs[kind]),
                    "excess_cost": _cost(mine, min_cost_usd),
                }
            )
        else:
            entry["incidents_opened"] = sum(1 for o in mine if o.incident_id is not None)
        per_type[kind] = entry
    return {
        "seeds": [r.seed for r in results],
        "scenario_days": days,
        "engine": _accuracy(outcomes, "rank"),
        "baro_baseline": _accuracy(outcomes, "baseline_rank"),
        "grouping": _prf(*pairs["overall"]),
        "false_incidents_per_day": _round(sum(r.false_incidents for r in results) / days),
        "incidents": sum(r.incidents for r in results),
        "suppressed_anomalies": sum(r.suppressed for r in results),
        "excess_cost": _cost(outcomes, min_cost_usd),
        "per_type": per_type,
        "pass_seconds_max": _round(max((r.pass_seconds for r in results), default=0.0)),
    }


@dataclass
class FeedbackReport:
    """Analysts' verdicts on the incidents' root causes (``analytics.incident_feedback``).

    An incident is *marked* when at least one analyst left a verdict; its verdict is the
    majority of its analysts' (a tie is *disputed* and counts as not confirmed). ``ac@1`` is the
    engine's root-cause accuracy on the marked incidents as the analysts judged it (the share
    confirmed); ``ac@3`` also counts a wrong first cause whose correction (the analyst's
    ``correct_cause_type``/``entity``) is the engine's second or third candidate. A wrong verdict
    without a correction cannot be placed and counts as a miss at 3 too.
    """

    marked: int
    verdicts: int
    confirmed: int
    rejected: int
    disputed: int
    corrected: int
    ac1: float | None
    ac3: float | None
    per_type: dict[str, dict[str, float | int | None]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "marked_incidents": self.marked,
            "verdicts": self.verdicts,
            "confirmed": self.confirmed,
            "rejected": self.rejected,
            "disputed": self.disputed,
            "corrected": self.corrected,
            "confirmed_share": self.ac1,
            "engine_on_marked": {"ac@1": self.ac1, "ac@3": self.ac3},
            "per_type": self.per_type,
        }


def _candidate_pairs(candidates: Any) -> list[tuple[str, str]]:
    if isinstance(candidates, str):
        import json

        candidates = json.loads(candidates)
    return [(str(c["cause_type"]), str(c["entity"])) for c in candidates or []]


def grade_feedback(feedback: pd.DataFrame, incidents: pd.DataFrame) -> FeedbackReport:
    """Grade the engine by the analysts' marks (see ``FeedbackReport``).

    Args:
        feedback: rows of ``incident_id, verdict`` (``root_cause_right``/``root_cause_wrong``)
            with optional ``correct_cause_type, correct_cause_entity``.
        incidents: rows of ``incident_id, root_cause_type, candidates`` (the ranked candidates:
            a list of dicts with ``cause_type`` and ``entity``, or its JSON); marks on incidents
            missing here are ignored.
    """
    known = incidents.set_index("incident_id")
    rows = feedback[feedback["incident_id"].isin(known.index)]
    confirmed = rejected = disputed = corrected = hit3 = 0
    per_type: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # marked, at 1, at 3
    for incident_id, marks in rows.groupby("incident_id", sort=True):
        right = int((marks["verdict"] == "root_cause_right").sum())
        wrong = int((marks["verdict"] == "root_cause_wrong").sum())
        incident = known.loc[incident_id]
        cause_type = str(incident["root_cause_type"])
        per_type[cause_type][0] += 1
        if right > wrong:
            confirmed += 1
            hit3 += 1
            per_type[cause_type][1] += 1
            per_type[cause_type][2] += 1
            continue
        if right == wrong:
            disputed += 1
        else:
            rejected += 1
        fixes = marks[marks["verdict"] == "root_cause_wrong"]
        if "correct_cause_type" in fixes:
            fixes = fixes.dropna(subset=["correct_cause_type", "correct_cause_entity"])
        else:
            fixes = fixes.iloc[0:0]
        if fixes.empty:
            continue
        corrected += 1
        fix = (str(fixes["correct_cause_type"].iloc[0]), str(fixes["correct_cause_entity"].iloc[0]))
        if fix in _candidate_pairs(incident["candidates"])[:3]:
            hit3 += 1
            per_type[cause_type][2] += 1
    marked = confirmed + rejected + disputed
    return FeedbackReport(
        marked=marked,
        verdicts=len(rows),
        confirmed=confirmed,
        rejected=rejected,
        disputed=disputed,
        corrected=corrected,
        ac1=_round(confirmed / marked) if marked else None,
        ac3=_round(hit3 / marked) if marked else None,
        per_type={
            t: {"marked": n, "ac@1": _round(a / n), "ac@3": _round(b / n)}
            for t, (n, a, b) in sorted(per_type.items())
        },
    )


def fleet_anomalies(
    series: pd.DataFrame, since: pd.Timestamp, spec: Any | None = None
) -> pd.DataFrame:
    """Anomalies of the hub's detector fleet (``ml.anomaly.fleet``) instead of the stand-in.

    One detector per (route, metric) is fitted on the clean history before ``since`` and scores
    the hours from ``since`` on without refitting, as the weekly training and the hourly scoring
    jobs do. Returns rows in the ``analytics.anomalies`` shape.

    Args:
        series: hourly series (``ml.correlation.model``), one row per route and hour.
        since: first scored hour (the scenario day).
        spec: the ``DetectorSpec`` (default: the published configuration's defaults).
    """
    from ml.anomaly.fleet import DetectorSpec, Fleet, fleet_scores_frame
    from ml.keys import RouteKey

    spec = spec or DetectorSpec()
    keys = ["tenant_id", "asset_id", "request_model"]
    train, full = {}, {}
    for (tenant, asset, model), one in series.groupby(keys, sort=True):
        one = one.set_index("bucket_at").sort_index()
        route = RouteKey(str(tenant), str(asset), str(model)).encode()
        for metric in BARO_METRICS:
            values = one[metric].astype(float)
            full[(route, metric)] = values
            train[(route, metric)] = values[values.index < since]
    fleet = Fleet.fit(spec, train)
    scores = fleet_scores_frame(fleet.score(full))
    routes = [RouteKey.decode(s) for s in scores["series_id"]]
    return pd.DataFrame(
        {
            "bucket_at": pd.to_datetime(scores["bucket_at"], utc=True),
            "tenant_id": [r.tenant_id for r in routes],
            "asset_id": [r.application_id for r in routes],
            "request_model": [r.model for r in routes],
            "metric": scores["metric"],
            "observed": scores["observed"],
            "expected": scores["expected"],
            "deviation": scores["deviation"],
            "score": scores["score"],
            "is_anomaly": scores["is_anomaly"].astype(bool),
        }
    )
