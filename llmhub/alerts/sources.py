"""Sources of alertables: anomalies, budget breaches (predictive), spend burn rates, SLO burn
rates, and (when the correlation work lands) incidents.

A source reads its table(s) and returns the alertables that are firing now. A ``complete``
source reports every firing alert of its kind on each fetch, so an alert it stops reporting has
resolved (the evaluator emits the resolve); all sources here are complete.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Protocol

import psycopg

from llmhub.alerts.model import Alertable

State = Mapping[str, Mapping[str, Any]]


class AlertSource(Protocol):
    name: str
    complete: bool

    def fetch(self, conn: psycopg.Connection, now: datetime, state: State) -> Sequence[Alertable]:
        """The alertables of this source firing at ``now``; ``state`` is what the evaluator
        last recorded for this source's keys (alert key -> status, fingerprint, detail)."""
        ...


def _exists(conn: psycopg.Connection, table: str) -> bool:
    return conn.execute("select to_regclass(%s) is not null", (table,)).fetchone()[0]


@dataclass
class AnomalySource:
    """Series with a flagged anomaly in the last ``lookback``: one alert per series (tenant,
    application, model, metric), not per hour, raised in severity by the score."""

    lookback: timedelta = timedelta(hours=3)
    name: str = "anomaly"
    complete: bool = True

    def fetch(self, conn: psycopg.Connection, now: datetime, state: State) -> list[Alertable]:
        rows = conn.execute(
            """
            select tenant_id, asset_id, request_model, metric, min(bucket_at), max(bucket_at),
                   max(score), count(*),
                   (array_agg(observed order by bucket_at desc))[1],
                   (array_agg(expected order by bucket_at desc))[1],
                   (array_agg(model_version order by bucket_at desc))[1]
            from analytics.anomalies
            where is_anomaly and bucket_at >= %s and bucket_at <= %s
            group by tenant_id, asset_id, request_model, metric
            """,
            (now - self.lookback, now),
        ).fetchall()
        alerts = []
        for tenant, app, model, metric, first, last, score, hours, observed, expected, ver in rows:
            severity = "error" if score >= 0.99 else "warning"
            alerts.append(
                Alertable(
                    key=f"anomaly:{tenant}:{app}:{model}:{metric}",
                    tenant_id=tenant,
                    source=self.name,
                    severity=severity,
                    status="firing",
                    title=f"Anomalous {metric} for {app} ({model})",
                    summary=(
                        f"{metric} was {observed:.4g} against {expected:.4g} expected in the hour "
                        f"of {last:%Y-%m-%d %H:%M} UTC; {hours} anomalous hour(s) since "
                        f"{first:%H:%M}, top score {score:.3f}."
                    ),
                    occurred_at=first,
                    application=app,
                    details={
                        "metric": metric,
                        "request_model": model,
                        "observed": observed,
                        "expected": expected,
                        "score": score,
                        "detector_version": ver,
                    },
                    # Further anomalous hours of the same series are the same alert; only a
                    # severity change is news.
                    change_basis=severity,
                )
            )
        return alerts


MATERIAL_MIN_DAYS = 2
MATERIAL_SHARE_OF_LEAD = 0.25


def materially_earlier(announced: date, projected: date, today: date) -> bool:
    """Whether a projected breach date is news after ``announced`` was told.

    Materially earlier: at least ``MATERIAL_MIN_DAYS`` days earlier and at least a quarter of
    the lead time that was announced (days from today to the announced date). A breach told 20
    days ahead is told again when it moves 5+ days closer; one told 4 days ahead, 2+ days.
    Later dates are never news (the tenant was already warned of the earlier one).
    """
    moved = (announced - projected).days
    lead = max((announced - today).days, 0)
    return moved >= max(MATERIAL_MIN_DAYS, MATERIAL_SHARE_OF_LEAD * lead)


@dataclass
class BudgetBreachSource:
    """Tenants (and budgeted applications) projected to exceed their monthly budget.

    Told once per month; told again only when the breach date moves materially earlier
    (``materially_earlier``); resolved when the newest projection no longer breaches.
    """

    name: str = "budget_breach"
    complete: bool = True

    def fetch(self, conn: psycopg.Connection, now: datetime, state: State) -> list[Alertable]:
        rows = conn.execute(
            """
            select distinct on (tenant_id, asset_id)
                tenant_id, asset_id, month, projected_on, budget_usd, month_to_date_usd,
                projected_month_end_usd, projected_upper_usd, breach_date
            from analytics.budget_projections
            where month = date_trunc('month', %s::timestamptz at time zone 'UTC')::date
            order by tenant_id, asset_id, projected_on desc
            """,
            (now,),
        ).fetchall()
        today = now.date()
        alerts = []
        for tenant, asset, month, projected_on, budget, mtd, projected, upper, breach in rows:
            if breach is None or budget is None:
                continue
            key = f"budget:{tenant}:{asset}:{month:%Y-%m}"
            previous = state.get(key)
            announced = breach
            if previous and previous["status"] == "firing":
                told = previous["detail"].get("details", {}).get("announced_breach_date")
                if told and not materially_earlier(date.fromisoformat(told), breach, today):
                    announced = date.fromisoformat(told)
            days_left = (breach - today).days
            severity = "critical" if days_left <= 3 else "error" if days_left <= 7 else "warning"
            scope = "tenant-wide" if asset == "*" else f"application {asset}"
            month_days = calendar.monthrange(month.year, month.month)[1]
            alerts.append(
                Alertable(
                    key=key,
                    tenant_id=tenant,
                    source=self.name,
                    severity=severity,
                    status="firing",
                    title=f"{tenant} projected to exceed its {month:%B} budget on {breach:%b %d}",
                    summary=(
                        f"{scope} budget ${float(budget):,.2f}; ${mtd:,.2f} spent month to date, "
                        f"${projected:,.2f} projected by month end (upper ${upper:,.2f}); breach "
                        f"projected on {breach.isoformat()} ({days_left} days from {today})."
                    ),
                    occurred_at=datetime.combine(projected_on, datetime.min.time(), now.tzinfo),
                    application=None if asset == "*" else asset,
                    details={
                        "breach_date": breach.isoformat(),
                        "announced_breach_date": announced.isoformat(),
                        "budget_usd": float(budget),
                        "month_to_date_usd": mtd,
                        "projected_month_end_usd": projected,
                        "month_days": month_days,
                    },
                    change_basis=f"breach:{announced.isoformat()}",
                    repeats=False,
                )
            )
        return alerts


# SRE workbook, multiwindow multi-burn-rate, applied to the monthly budget: burning 14.4x the
# even pace for an hour spends 2% of the month's budget; 6x for six hours spends 5%.
SPEND_BURN_WINDOWS = (
    # name, long window, short window, burn rate threshold, severity
    ("fast", timedelta(hours=1), timedelta(minutes=5), 14.4, "critical"),
    ("slow", timedelta(hours=6), timedelta(minutes=30), 6.0, "warning"),
)


def burn_rate(
    spend_usd: float, window: timedelta, monthly_budget_usd: float, month_days: int
) -> float:
    """Spend in ``window`` as a multiple of the even pace that spends the budget in a month."""
    even = monthly_budget_usd * window.total_seconds() / (month_days * 86_400)
    return spend_usd / even if even > 0 else 0.0


@dataclass
class SpendBurnSource:
    """Tenants spending their monthly budget too fast, over a fast (1h confirmed by 5m) and a
    slow (6h confirmed by 30m) window pair: both windows of a pair must burn above its rate."""

    name: str = "spend_burn"
    complete: bool = True

    def fetch(self, conn: psycopg.Connection, now: datetime, state: State) -> list[Alertable]:
        horizon = max(w[1] for w in SPEND_BURN_WINDOWS)
        filters = ", ".join(
            f"coalesce(sum(r.cost_usd) filter (where r.occurred_at >= %(now)s - "
            f"interval '{int(w.total_seconds())} seconds'), 0)::float"
            for _, long, short, _, _ in SPEND_BURN_WINDOWS
            for w in (long, short)
        )
        rows = conn.execute(
            f"""
            select b.tenant_id, b.monthly_budget_usd::float, {filters}
            from analytics.budgets as b
            inner join raw.llm_requests as r
                on r.tenant_id = b.tenant_id and r.occurred_at >= %(since)s
                and r.occurred_at < %(now)s
            where b.asset_id = '*'
            group by b.tenant_id, b.monthly_budget_usd
            """,  # noqa: S608 - intervals from module constants
            {"now": now, "since": now - horizon},
        ).fetchall()
        month_days = calendar.monthrange(now.year, now.month)[1]
        alerts = []
        for tenant, budget, *spends in rows:
            for i, (name, long, short, threshold, severity) in enumerate(SPEND_BURN_WINDOWS):
                long_rate = burn_rate(spends[2 * i], long, budget, month_days)
                short_rate = burn_rate(spends[2 * i + 1], short, budget, month_days)
                if long_rate < threshold or short_rate < threshold:
                    continue
                hours = long.total_seconds() / 3600
                alerts.append(
                    Alertable(
                        key=f"spend_burn:{tenant}:{name}",
                        tenant_id=tenant,
                        source=self.name,
                        severity=severity,
                        status="firing",
                        title=f"{tenant} is spending its budget {long_rate:.1f}x too fast ({name})",
                        summary=(
                            f"${spends[2 * i]:,.2f} in the last {hours:g} h is "
                            f"{long_rate:.1f}x the "
                            f"even pace of a ${budget:,.2f} monthly budget "
                            f"({short_rate:.1f}x over the last {short.total_seconds() / 60:g} min; "
                            f"threshold {threshold}x)."
                        ),
                        occurred_at=now,
                        details={
                            "window": name,
                            "burn_rate_long": round(long_rate, 2),
                            "burn_rate_short": round(short_rate, 2),
                            "threshold": threshold,
                        },
                        change_basis=f"{name}|{severity}",
                    )
                )
        return alerts


@dataclass
class SloBurnSource:
    """SLO error budgets burning too fast, from the dbt mart ``marts.fct_slo_burn_rate_alerts``
    (multiwindow multi-burn-rate: 1h/5m at 14.4x pages, 6h/30m at 6x tickets)."""

    name: str = "slo_burn"
    complete: bool = True

    def fetch(self, conn: psycopg.Connection, now: datetime, state: State) -> list[Alertable]:
        if not _exists(conn, "marts.fct_slo_burn_rate_alerts"):
            return []
        rows = conn.execute(
            "select slo_id, tenant_id, asset_id, slo_kind, alert_window, severity, "
            "burn_rate_long, burn_rate_short, burn_rate_threshold, objective, evaluated_at "
            "from marts.fct_slo_burn_rate_alerts where is_firing"
        ).fetchall()
        alerts = []
        for (
            slo_id,
            tenant,
            asset,
            kind,
            window,
            severity,
            long,
            short,
            threshold,
            objective,
            at,
        ) in rows:
            alerts.append(
                Alertable(
                    key=f"slo_burn:{slo_id}:{window}",
                    tenant_id=tenant,
                    source=self.name,
                    severity=severity,
                    status="firing",
                    title=f"SLO {slo_id} ({kind} {objective:.3%}) burning {long:.1f}x",
                    summary=(
                        f"{kind} error budget of {asset} burns {long:.1f}x (long window) and "
                        f"{short:.1f}x (short window), threshold {threshold}x: {window}."
                    ),
                    occurred_at=at,
                    application=None if asset == "*" else asset,
                    details={"slo_id": slo_id, "window": window, "burn_rate_long": long},
                    change_basis=f"{window}|{severity}",
                )
            )
        return alerts


@dataclass
class DeploySource:
    """Registry deploys (a model, prompt, application or policy registered or given a new
    version) in the last ``lookback``: sent once to PagerDuty routes as change events, the
    context an on-call engineer looks for beside an incident."""

    lookback: timedelta = timedelta(hours=1)
    name: str = "deploy"
    complete: bool = False

    def fetch(self, conn: psycopg.Connection, now: datetime, state: State) -> list[Alertable]:
        rows = conn.execute(
            """
            select event_id, occurred_at, tenant_id, asset_id, event_type, asset_kind, name,
                   version, provider, model, owner
            from raw.registry_events
            where occurred_at >= %s and occurred_at <= %s
            """,
            (now - self.lookback, now),
        ).fetchall()
        alerts = []
        for (
            event_id,
            at,
            tenant,
            asset,
            kind,
            asset_kind,
            name,
            version,
            provider,
            model,
            owner,
        ) in rows:
            verb = "registered" if kind == "asset_registered" else "updated"
            alerts.append(
                Alertable(
                    key=f"deploy:{tenant}:{asset}:{event_id}",
                    tenant_id=tenant,
                    source=self.name,
                    severity="info",
                    status="firing",
                    title=f"{asset_kind} {name} {version} {verb} ({asset})",
                    summary=f"{asset_kind} {name} version {version} {verb} by {owner or 'unknown'}"
                    + (f"; model {provider}/{model}" if model else ""),
                    occurred_at=at,
                    application=asset,
                    details={"asset_kind": asset_kind, "version": version, "event": kind},
                    repeats=False,
                )
            )
        return alerts


# analytics.incidents (migration 0008, the correlation work) grades severity on five levels.
INCIDENT_SEVERITY = {
    "info": "info",
    "low": "warning",
    "medium": "warning",
    "high": "error",
    "critical": "critical",
}


@dataclass
class IncidentSource:
    """Correlated incidents (``analytics.incidents``): open ones fire, resolved ones resolve,
    keyed by the stable incident id (the PagerDuty dedup key is ``llmhub:incident:<id>``).
    Reads nothing while the table does not exist."""

    resolved_lookback: timedelta = timedelta(days=1)
    name: str = "incident"
    complete: bool = False

    def fetch(self, conn: psycopg.Connection, now: datetime, state: State) -> list[Alertable]:
        if not _exists(conn, "analytics.incidents"):
            return []
        rows = conn.execute(
            """
            select incident_id, tenant_id, tenant_ids, asset_ids, status, severity, opened_at,
                   resolved_at,
                   root_cause_type, root_cause_entity, explanation, impact_score,
                   affected_requests, excess_cost_usd
            from analytics.incidents
            where status = 'open' or resolved_at >= %s
            """,
            (now - self.resolved_lookback,),
        ).fetchall()
        alerts = []
        for (incident_id, owner, tenants, assets, status, severity, opened, resolved, cause_type,
             cause, explanation, impact, requests, excess_cost) in rows:  # fmt: skip
            # A cross-tenant incident (tenant '*', e.g. a provider outage) is each touched
            # tenant's incident: every tenant's routes hear of it, under its own key.
            for tenant in tenants if owner == "*" else [owner]:
                key = f"incident:{incident_id}" + (f":{tenant}" if owner == "*" else "")
                if status == "resolved" and key not in state:
                    continue  # opened and resolved between two evaluations: nobody was told
                alerts.append(
                    Alertable(
                        key=key,
                        tenant_id=tenant,
                        source=self.name,
                        severity=INCIDENT_SEVERITY.get(severity, "warning"),
                        status="resolved" if status == "resolved" else "firing",
                        title=f"Incident: {cause_type} {cause}",
                        summary=explanation,
                        occurred_at=opened,
                        resolved_at=resolved,
                        application=assets[0] if len(assets or []) == 1 else None,
                        details={
                            "incident_id": incident_id,
                            "root_cause_type": cause_type,
                            "root_cause_entity": cause,
                            "impact_score": impact,
                            "affected_requests": requests,
                            "excess_cost_usd": excess_cost,
                        },
                        # Impact and cost figures move with every pass; cause and severity are news.
                        change_basis=f"{severity}|{cause_type}|{cause}",
                    )
                )
        return alerts


def default_sources() -> list[AlertSource]:
    """Every source; a source whose table does not exist (yet) reports nothing."""
    return [
        IncidentSource(),
        DeploySource(),
        AnomalySource(),
        BudgetBreachSource(),
        SpendBurnSource(),
        SloBurnSource(),
    ]
