"""SQL of the incidents: inputs of a correlation pass and the idempotent upsert of its output.

Inputs (all since a lookback start): flagged ``analytics.anomalies``; registry, security and
policy events from the raw tables; hourly series from ``marts.fct_llm_requests_hourly`` (a week
more, for change points and the cost baseline); forecasts from ``analytics.forecasts`` (the
newest forecast of each target hour made before it); and the stored incidents the pass may
continue. Output: ``analytics.incidents`` upserted by ``incident_id`` and their members
replaced, in one transaction.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import pandas as pd
import psycopg

if TYPE_CHECKING:
    from ml.correlation.engine import CorrelationResult
    from ml.correlation.model import Incident

ANOMALIES = """
select bucket_at, tenant_id, asset_id, request_model, metric, observed, expected, score,
    is_anomaly
from analytics.anomalies
where is_anomaly and bucket_at >= %(since)s
"""
EVENTS = """
select event_id::text, occurred_at, 'registry' as family, event_type, tenant_id, asset_id, name,
    version, asset_kind, model, provider, null::text as user_id, severity,
    attributes ->> 'change' as change
from raw.registry_events where occurred_at >= %(since)s - interval '1 day'
union all
select event_id::text, occurred_at, 'security', event_type, tenant_id, asset_id, alert_type,
    null, null, null, null, attributes ->> 'user_id', severity, null
from raw.security_alerts where occurred_at >= %(since)s - interval '1 day'
union all
select event_id::text, occurred_at, 'policy', event_type, tenant_id, asset_id, policy_id,
    null, null, null, null, attributes ->> 'user_id', severity, null
from raw.policy_violations where occurred_at >= %(since)s - interval '1 day'
"""
SERIES = """
select request_hour_at as bucket_at, tenant_id, asset_id, request_model,
    sum(request_count)::float8 as request_count,
    sum(input_tokens + output_tokens)::float8 as tokens,
    sum(cost_usd)::float8 as cost_usd,
    (sum(error_count)::float8 / nullif(sum(request_count), 0)) as error_rate,
    max(latency_p95_ms)::float8 as latency_p95_ms
from marts.fct_llm_requests_hourly
where request_hour_at >= %(since)s - interval '8 days'
group by 1, 2, 3, 4
"""
FORECASTS = """
select distinct on (series_key, metric, target_at)
    split_part(series_key, '/', 1) as tenant_id, split_part(series_key, '/', 2) as asset_id,
    split_part(series_key, '/', 3) as request_model, metric, target_at, yhat, yhat_lower,
    yhat_upper
from analytics.forecasts
where grain = 'hour' and target_at >= %(since)s and forecast_made_at <= target_at
order by series_key, metric, target_at, forecast_made_at desc
"""
EXISTING = """
select incident_id, root_cause_type, root_cause_entity, tenant_id, opened_at, last_seen_at,
    status, signature
from analytics.incidents where last_seen_at >= %(since)s - interval '1 day'
"""
PROVIDERS = """
select distinct request_model, provider from marts.fct_llm_requests_hourly
where request_hour_at >= %(since)s - interval '8 days'
"""
LIBRARY = """
select incident_id, signature, root_cause_entity, last_seen_at
from analytics.incidents where status = 'resolved'
"""
UPSERT = """
insert into analytics.incidents (
    incident_id, tenant_id, tenant_ids, asset_ids, opened_at, last_seen_at, resolved_at, status,
    severity, root_cause_type, root_cause_entity, confidence, candidates, impact_score,
    affected_requests, excess_cost_usd, excess_volume_usd, excess_tokens_per_request_usd,
    excess_price_mix_usd, cost_baseline, explanation, rules, signature, seen_before, member_count
) values (
    %(incident_id)s, %(tenant_id)s, %(tenant_ids)s, %(asset_ids)s, %(opened_at)s,
    %(last_seen_at)s, %(resolved_at)s, %(status)s, %(severity)s, %(root_cause_type)s,
    %(root_cause_entity)s, %(confidence)s, %(candidates)s, %(impact_score)s,
    %(affected_requests)s, %(excess_cost_usd)s, %(excess_volume_usd)s,
    %(excess_tokens_per_request_usd)s, %(excess_price_mix_usd)s, %(cost_baseline)s,
    %(explanation)s, %(rules)s, %(signature)s, %(seen_before)s, %(member_count)s
)
on conflict (incident_id) do update set
    tenant_id = excluded.tenant_id, tenant_ids = excluded.tenant_ids,
    asset_ids = excluded.asset_ids,
    opened_at = least(analytics.incidents.opened_at, excluded.opened_at),
    last_seen_at = greatest(analytics.incidents.last_seen_at, excluded.last_seen_at),
    resolved_at = excluded.resolved_at, status = excluded.status, severity = excluded.severity,
    root_cause_type = excluded.root_cause_type, root_cause_entity = excluded.root_cause_entity,
    confidence = excluded.confidence, candidates = excluded.candidates,
    impact_score = excluded.impact_score, affected_requests = excluded.affected_requests,
    excess_cost_usd = excluded.excess_cost_usd, excess_volume_usd = excluded.excess_volume_usd,
    excess_tokens_per_request_usd = excluded.excess_tokens_per_request_usd,
    excess_price_mix_usd = excluded.excess_price_mix_usd,
    cost_baseline = excluded.cost_baseline, explanation = excluded.explanation,
    rules = excluded.rules, signature = excluded.signature, seen_before = excluded.seen_before,
    member_count = excluded.member_count, updated_at = now()
"""
INSERT_MEMBER = """
insert into analytics.incident_members (
    incident_id, member_kind, member_key, tenant_id, asset_id, occurred_at, detail
) values (%s, %s, %s, %s, %s, %s, %s)
on conflict (incident_id, member_kind, member_key) do update set
    tenant_id = excluded.tenant_id, asset_id = excluded.asset_id,
    occurred_at = excluded.occurred_at, detail = excluded.detail
"""


def _frame(conn: psycopg.Connection, query: str, params: dict) -> pd.DataFrame:
    with conn.cursor() as cur:
        cur.execute(query, params)
        columns = [c.name for c in cur.description or ()]
        return pd.DataFrame(cur.fetchall(), columns=columns)


@dataclass
class Inputs:
    """Everything one correlation pass reads."""

    anomalies: pd.DataFrame
    events: pd.DataFrame
    series: pd.DataFrame
    forecasts: pd.DataFrame
    existing: pd.DataFrame
    library: pd.DataFrame
    providers: dict[str, str]


def correlate_inputs(inputs: Inputs, now: pd.Timestamp) -> CorrelationResult:
    """One correlation pass over ``inputs`` as of ``now``: the stored open incidents are
    updated, not duplicated, and resolved ones are the library of signatures seen before."""
    from ml.correlation.engine import correlate
    from ml.correlation.patterns import PastIncident

    library = [
        PastIncident(r.incident_id, r.signature, r.root_cause_entity, r.last_seen_at)
        for r in inputs.library.itertuples(index=False)
    ]
    return correlate(
        inputs.anomalies,
        inputs.events,
        inputs.providers,
        series=inputs.series if not inputs.series.empty else None,
        forecasts=inputs.forecasts,
        now=now,
        existing=inputs.existing,
        library=library,
    )


def read_inputs(conn: psycopg.Connection, since: datetime) -> Inputs:
    """The inputs of a pass over the anomalies flagged from ``since`` on."""
    params = {"since": since}
    has_mart = conn.execute(
        "select to_regclass('marts.fct_llm_requests_hourly') is not null"
    ).fetchone()[0]
    frames = {
        name: _frame(conn, query, params)
        if has_mart or name != "series"
        else pd.DataFrame(
            columns=[
                "bucket_at",
                "tenant_id",
                "asset_id",
                "request_model",
                "request_count",
                "tokens",
                "cost_usd",
                "error_rate",
                "latency_p95_ms",
            ]
        )
        for name, query in (
            ("anomalies", ANOMALIES),
            ("events", EVENTS),
            ("series", SERIES),
            ("forecasts", FORECASTS),
            ("existing", EXISTING),
            ("library", LIBRARY),
        )
    }
    for name, columns in (
        ("anomalies", ["observed", "expected", "score"]),
        ("series", ["request_count", "tokens", "cost_usd", "error_rate", "latency_p95_ms"]),
        ("forecasts", ["yhat", "yhat_lower", "yhat_upper"]),
    ):
        for column in columns:
            frames[name][column] = pd.to_numeric(frames[name][column], errors="coerce")
    for name, columns in (
        ("existing", ["opened_at", "last_seen_at"]),
        ("library", ["last_seen_at"]),
    ):
        for column in columns:
            frames[name][column] = pd.to_datetime(frames[name][column], utc=True)
    providers = dict(conn.execute(PROVIDERS, params).fetchall()) if has_mart else {}
    return Inputs(**frames, providers=providers)


@dataclass
class UpsertReport:
    opened: int
    updated: int
    resolved: int
    members: int
    by_root_cause: dict[str, int]


def _row(incident: Incident) -> dict:
    cost = incident.cost
    return {
        "incident_id": incident.incident_id,
        "tenant_id": incident.tenant_id,
        "tenant_ids": list(incident.tenant_ids),
        "asset_ids": list(incident.asset_ids),
        "opened_at": incident.opened_at.to_pydatetime(),
        "last_seen_at": incident.last_seen_at.to_pydatetime(),
        "resolved_at": incident.resolved_at.to_pydatetime() if incident.resolved_at else None,
        "status": incident.status,
        "severity": incident.severity,
        "root_cause_type": incident.root_cause_type,
        "root_cause_entity": incident.root_cause_entity,
        "confidence": float(min(1.0, max(0.0, incident.confidence))),
        "candidates": json.dumps([asdict(c) for c in incident.candidates]),
        "impact_score": incident.impact_score,
        "affected_requests": incident.affected_requests,
        "excess_cost_usd": cost.excess_usd,
        "excess_volume_usd": cost.volume_usd,
        "excess_tokens_per_request_usd": cost.tokens_per_request_usd,
        "excess_price_mix_usd": cost.price_mix_usd,
        "cost_baseline": cost.baseline,
        "explanation": incident.explanation,
        "rules": list(incident.rules),
        "signature": incident.signature,
        "seen_before": incident.seen_before,
        "member_count": len(incident.members),
    }


def upsert_incidents(
    conn: psycopg.Connection, incidents: list[Incident], since: datetime
) -> UpsertReport:
    """Upsert ``incidents`` and their members in one transaction; re-running is idempotent.

    The members of an incident from ``since`` on (the pass's window) are replaced, so an anomaly
    that a later pass moves to another incident leaves the first; older members stay.

    ``opened`` counts new ids, ``updated`` ids already stored, ``resolved`` incidents whose
    status became resolved in this pass.
    """
    opened = updated = resolved = members = 0
    by_cause: dict[str, int] = {}
    with conn.transaction(), conn.cursor() as cur:
        for incident in incidents:
            cur.execute(
                "select status from analytics.incidents where incident_id = %s",
                (incident.incident_id,),
            )
            before = cur.fetchone()
            cur.execute(UPSERT, _row(incident))
            if before is None:
                opened += 1
            else:
                updated += 1
            if incident.status == "resolved" and (before is None or before[0] != "resolved"):
                resolved += 1
            by_cause[incident.root_cause_type] = by_cause.get(incident.root_cause_type, 0) + 1
            rows = [
                (
                    incident.incident_id,
                    m.kind,
                    m.member_key,
                    m.tenant_id,
                    m.asset_id,
                    pd.Timestamp(m.at).to_pydatetime(),
                    m.detail,
                )
                for m in incident.members
            ]
            cur.execute(
                "delete from analytics.incident_members where incident_id = %s "
                "and occurred_at >= %s",
                (incident.incident_id, since),
            )
            cur.executemany(INSERT_MEMBER, rows)
            members += len(rows)
    return UpsertReport(opened, updated, resolved, members, by_cause)


def resolve_quiet(conn: psycopg.Connection, now: datetime, quiet: timedelta) -> int:
    """Resolve open incidents whose last member hour ended ``quiet`` before ``now`` (those no
    pass re-produced because their anomalies left the lookback); returns how many."""
    cur = conn.execute(
        "update analytics.incidents set status = 'resolved', "
        "resolved_at = last_seen_at + interval '1 hour', updated_at = now() "
        "where status = 'open' and last_seen_at + interval '1 hour' + %s <= %s",
        (quiet, now),
    )
    return cur.rowcount


def feedback_summary(conn: psycopg.Connection) -> dict[str, int]:
    """Analyst verdicts on root causes: counts of right and wrong."""
    rows = conn.execute(
        "select verdict, count(*) from analytics.incident_feedback group by verdict"
    ).fetchall()
    return {verdict: int(n) for verdict, n in rows}


FEEDBACK = """
select incident_id, verdict, correct_cause_type, correct_cause_entity, noted_by
from analytics.incident_feedback
"""
MARKED_INCIDENTS = """
select incident_id, root_cause_type, root_cause_entity, candidates
from analytics.incidents i
where exists (select from analytics.incident_feedback f where f.incident_id = i.incident_id)
"""


def read_feedback(conn: psycopg.Connection) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The analysts' verdicts and the incidents they marked (with ranked candidates), the input
    of ``ml.evaluation.correlation.grade_feedback``."""
    cur = conn.execute(FEEDBACK)
    feedback = pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])
    cur = conn.execute(MARKED_INCIDENTS)
    incidents = pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])
    return feedback, incidents


def lookback_start(now: datetime, hours: int) -> datetime:
    """Start of the anomaly window a pass reads (``hours`` back from ``now``, on the hour)."""
    return (now - timedelta(hours=hours)).replace(minute=0, second=0, microsecond=0)
