"""The traffic plan: tenants, applications, per-minute arrival counts, incidents."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from llmhub.producers.synthetic.catalog import (
    _APP_KINDS,
    _IS_EMBEDDING,
    _STREAM_PLAN,
    _TENANT_NAMES,
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    MODEL_INDEX,
    MODELS,
)
from llmhub.producers.synthetic.requests import from_epoch_ms


@dataclass(frozen=True)
class Application:
    """A tenant's application (a Registry asset): the models it calls and its traffic share."""

    asset_id: str
    tenant_id: str
    kind: str
    models: tuple[str, ...]
    share: float


@dataclass(frozen=True)
class Incident:
    """Ground truth of one injected anomaly.

    ``tenant_id`` and ``asset_id`` are None for a model-wide incident (a latency regression
    hits every tenant calling ``model``); ``model`` is None when every model of the application
    is affected. ``magnitude`` is the multiplier of ``metric`` (``latency_ms``, ``cost_usd``,
    ``security_alerts``), or for ``error_rate`` and ``rate_limited_rate`` the rate itself. A
    cost spike multiplies input and output tokens alike, so cost per request follows. The window
    is ``[start, end)``.
    """

    kind: str
    tenant_id: str | None
    asset_id: str | None
    model: str | None
    metric: str
    start: datetime
    end: datetime
    magnitude: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form with ISO-8601 UTC times."""
        return {
            "kind": self.kind,
            "tenant_id": self.tenant_id,
            "asset_id": self.asset_id,
            "model": self.model,
            "metric": self.metric,
            "start": self.start.isoformat().replace("+00:00", "Z"),
            "end": self.end.isoformat().replace("+00:00", "Z"),
            "magnitude": self.magnitude,
        }


@dataclass(frozen=True)
class _Window:
    """An incident in index form, as the chunk generators apply it."""

    app: int
    model: int
    start_ms: int
    end_ms: int
    magnitude: float
    #: A gradual drift: the effect grows linearly from none at ``start_ms`` to ``magnitude`` at
    #: ``start_ms + ramp_ms`` and holds there (0: a step to ``magnitude``).
    ramp_ms: int = 0

    def factor(self, ts: np.ndarray) -> np.ndarray | float:
        """The multiplier at each time of ``ts`` (a constant without a ramp)."""
        if not self.ramp_ms:
            return self.magnitude
        progress = np.clip((ts - self.start_ms) / self.ramp_ms, 0.0, 1.0)
        return 1.0 + (self.magnitude - 1.0) * progress

    def mask(self, ts: np.ndarray, app: np.ndarray, model: np.ndarray) -> np.ndarray:
        hit = (ts >= self.start_ms) & (ts < self.end_ms)
        if self.app >= 0:
            hit &= app == self.app
        if self.model >= 0:
            hit &= model == self.model
        return hit


@dataclass
class _Plan:
    seed: int
    start_ms: int
    end_ms: int
    minute_counts: np.ndarray
    tenants: list[str]
    users: list[list[str]]
    apps: list[Application]
    app_tenant: np.ndarray
    app_in_scale: np.ndarray
    app_out_scale: np.ndarray
    route_app: np.ndarray
    route_model: np.ndarray
    route_p: np.ndarray
    latency: list[_Window] = field(default_factory=list)
    cost: list[_Window] = field(default_factory=list)
    errors: list[_Window] = field(default_factory=list)
    security: list[_Window] = field(default_factory=list)
    rate_limits: list[_Window] = field(default_factory=list)
    stops: list[_Window] = field(default_factory=list)
    # Model-version rollouts: (epoch ms, tenant id, model name), emitted as registry updates.
    rollouts: list[tuple[int, str, str]] = field(default_factory=list)


def _build_plan(events: int, start_ms: int, n_minutes: int, seed: int) -> _Plan:
    rng = np.random.default_rng([seed, _STREAM_PLAN])
    n_tenants = int(rng.integers(4, 7))
    names = [str(x) for x in rng.permutation(np.array(_TENANT_NAMES))[:n_tenants]]
    tenant_w = 1.0 / np.arange(1, n_tenants + 1) ** 1.1
    tenant_w /= tenant_w.sum()
    tenants = [f"tenant-{name}" for name in names]
    users = [
        [f"user-{x:012x}" for x in rng.integers(0, 2**48, int(40 + 400 * w))] for w in tenant_w
    ]

    apps: list[Application] = []
    app_tenant, in_scale, out_scale = [], [], []
    route_app, route_model, route_p = [], [], []
    for t, (tenant, name) in enumerate(zip(tenants, names, strict=True)):
        n_apps = int(rng.integers(2, 5))
        kinds = [_APP_KINDS[k] for k in rng.choice(len(_APP_KINDS), n_apps, replace=False)]
        app_w = rng.dirichlet(np.full(n_apps, 2.0))
        for kind, w in zip(kinds, app_w, strict=True):
            models = [str(m) for m in rng.permutation(np.array(kind.chat_models))]
            chat = models[:2] if rng.random() < 0.6 else models[:1]
            share = float(tenant_w[t] * w)
            a = len(apps)
            routes = [(chat[0], 0.75 if len(chat) == 2 else 1.0)]
            if len(chat) == 2:
                routes.append((chat[1], 0.25))
            if kind.embedding_share:
                routes = [(m, p * (1 - kind.embedding_share)) for m, p in routes]
                routes.append(("text-embedding-3-small", kind.embedding_share))
            for model, p in routes:
                route_app.append(a)
                route_model.append(MODEL_INDEX[model])
                route_p.append(share * p)
            used = tuple(m for m, _ in routes)
            apps.append(Application(f"app-{name}-{kind.name}", tenant, kind.name, used, share))
            app_tenant.append(t)
            in_scale.append(kind.input_scale)
            out_scale.append(kind.output_scale)

    minute_ms = start_ms + MINUTE_MS * np.arange(n_minutes, dtype=np.int64)
    hour = (minute_ms % DAY_MS) / HOUR_MS
    # Business-hours peak mid-afternoon UTC (Europe's afternoon, America's morning).
    daily = 1.0 + 0.6 * np.cos(2 * np.pi * (hour - 15.0) / 24.0)
    weekday = (minute_ms // DAY_MS + 3) % 7
    weekly = np.where(weekday >= 5, 0.45, 1.0)
    weight = daily * weekly * rng.lognormal(0.0, 0.08, n_minutes)
    counts = rng.multinomial(events, weight / weight.sum())

    p = np.array(route_p)
    return _Plan(
        seed=seed,
        start_ms=start_ms,
        end_ms=start_ms + n_minutes * MINUTE_MS,
        minute_counts=counts,
        tenants=tenants,
        users=users,
        apps=apps,
        app_tenant=np.array(app_tenant),
        app_in_scale=np.array(in_scale),
        app_out_scale=np.array(out_scale),
        route_app=np.array(route_app),
        route_model=np.array(route_model),
        route_p=p / p.sum(),
    )


#: The incident sets ``generate`` can inject: ``gross`` (one latency regression, cost spike, error
#: storm and security burst, each obvious) and ``realistic`` (those plus the subtle ones an
#: operator actually misses: a 1.3-1.5x latency or +25-40% cost or 2-5% error rate on one route
#: of many, a latency drift, a cost level shift after a model-version change, traffic that stops).
INCIDENT_SETS = ("gross", "realistic")
_SUBTLE_KINDS = 6


def _plan_incidents(
    plan: _Plan, rng: np.random.Generator, incident_set: str = "gross"
) -> list[Incident]:
    """Place one incident of each kind of ``incident_set`` in its own time slot, on busy enough
    targets (a level shift lasts to the window's end and may overlap later slots)."""
    if incident_set not in INCIDENT_SETS:
        raise ValueError(f"unknown incident set {incident_set!r}; choose from {INCIDENT_SETS}")
    realistic = incident_set == "realistic"
    span = plan.end_ms - plan.start_ms
    lo = plan.start_ms + span // 10
    n_slots = 4 + (_SUBTLE_KINDS - 1 if realistic else 0)
    slot = (plan.end_ms - span // 20 - lo) // n_slots
    order = rng.permutation(4)
    app_share = np.bincount(plan.route_app, plan.route_p, len(plan.apps))
    chat_app_share = np.bincount(
        plan.route_app, plan.route_p * ~_IS_EMBEDDING[plan.route_model], len(plan.apps)
    )
    model_share = np.bincount(plan.route_model, plan.route_p, len(MODELS))
    model_share[_IS_EMBEDDING] = 0.0

    def window(k: int, hours: float) -> tuple[int, int]:
        length = min(int(hours * HOUR_MS), int(0.8 * slot))
        length = max(MINUTE_MS, length - length % MINUTE_MS)
        begin = lo + int(order[k]) * slot
        offset = int(rng.integers(0, max(1, slot - length)))
        begin = begin + offset - (begin + offset) % MINUTE_MS
        return begin, begin + length

    used_apps: set[int] = set()

    def pick(share: np.ndarray, apps: bool = True) -> int:
        share = share.copy()
        if apps and len(used_apps) < np.count_nonzero(share):
            share[list(used_apps)] = 0.0
        p = np.where(share >= 0.5 * share.max(), share, 0.0)
        chosen = int(rng.choice(len(share), p=p / p.sum()))
        if apps:
            used_apps.add(chosen)
        return chosen

    incidents: list[Incident] = []

    def add(
        kind: str,
        metric: str,
        app: int,
        model: int,
        bounds: tuple[int, int],
        mag: float,
        ramp_ms: int = 0,
    ) -> _Window:
        incidents.append(
            Incident(
                kind=kind,
                tenant_id=plan.apps[app].tenant_id if app >= 0 else None,
                asset_id=plan.apps[app].asset_id if app >= 0 else None,
                model=MODELS[model].name if model >= 0 else None,
                metric=metric,
                start=from_epoch_ms(bounds[0]),
                end=from_epoch_ms(bounds[1]),
                magnitude=mag,
            )
        )
        return _Window(app, model, bounds[0], bounds[1], mag, ramp_ms)

    model = pick(model_share, apps=False)
    plan.latency.append(add("latency_regression", "latency_ms", -1, model, window(0, 3), 3.0))
    app = pick(chat_app_share)
    plan.cost.append(add("cost_spike", "cost_usd", app, -1, window(1, 2), 5.0))
    app = pick(app_share)
    rate = round(float(rng.uniform(0.3, 0.5)), 2)
    plan.errors.append(add("error_storm", "error_rate", app, -1, window(2, 1), rate))
    app = pick(app_share)
    plan.security.append(add("security_burst", "security_alerts", app, -1, window(3, 1), 20.0))
    if realistic:
        _plan_subtle(plan, rng, lo, slot, used_apps, add)
    return incidents


def _plan_subtle(
    plan: _Plan,
    rng: np.random.Generator,
    lo: int,
    slot: int,
    used_apps: set[int],
    add: Callable[..., _Window],
) -> None:
    """The realistic set's subtle incidents, each on one (application, model) route of many,
    in slots 4.. (a traffic stop starts in business hours, when a silent route is expected to
    be busy; the level shift starts in the last third and lasts to the window's end)."""
    chat = ~_IS_EMBEDDING[plan.route_model]
    # One route of many, not the busiest: any chat route with at least a quarter of the
    # busiest chat route's traffic (a route of a handful of requests an hour has no p95).
    share = np.where(chat, plan.route_p, 0.0)
    eligible = share >= 0.25 * share.max()

    def route() -> tuple[int, int]:
        free = eligible & ~np.isin(plan.route_app, list(used_apps))
        p = np.where(free if free.any() else eligible, share, 0.0)
        r = int(rng.choice(len(p), p=p / p.sum()))
        used_apps.add(int(plan.route_app[r]))
        return int(plan.route_app[r]), int(plan.route_model[r])

    def window(k: int, hours: float, business: bool = False) -> tuple[int, int]:
        length = min(int(hours * HOUR_MS), int(0.8 * slot))
        length -= length % MINUTE_MS
        begin = lo + (4 + k) * slot + int(rng.integers(0, max(1, slot - length)))
        if business:
            day = begin - begin % DAY_MS
            begin = day + int(rng.integers(10, 15)) * HOUR_MS
            if begin < lo + (4 + k) * slot:
                begin += DAY_MS
        begin -= begin % MINUTE_MS
        return begin, begin + length

    order = rng.permutation(_SUBTLE_KINDS - 1)
    app, model = route()
    mag = round(float(rng.uniform(1.3, 1.5)), 2)
    plan.latency.append(add("subtle_latency", "latency_ms", app, model, window(order[0], 6), mag))
    app, model = route()
    mag = round(float(rng.uniform(1.25, 1.4)), 2)
    plan.cost.append(add("subtle_cost", "cost_usd", app, model, window(order[1], 6), mag))
    app, model = route()
    rate = round(float(rng.uniform(0.02, 0.05)), 3)
    plan.errors.append(add("subtle_errors", "error_rate", app, model, window(order[2], 6), rate))
    app, model = route()
    mag = round(float(rng.uniform(1.3, 1.6)), 2)
    bounds = window(order[3], 36)
    ramp = int(0.75 * (bounds[1] - bounds[0]))
    plan.latency.append(add("latency_drift", "latency_ms", app, model, bounds, mag, ramp))
    app, model = route()
    plan.stops.append(
        add("traffic_stop", "request_count", app, model, window(order[4], 4, True), 0.0)
    )
    # A new model version behind the same name: cost per request up 25-40% from the switch on.
    app, model = route()
    begin = plan.end_ms - int(rng.uniform(0.15, 0.3) * (plan.end_ms - plan.start_ms))
    begin -= begin % HOUR_MS
    mag = round(float(rng.uniform(1.25, 1.4)), 2)
    plan.cost.append(add("level_shift", "cost_usd", app, model, (begin, plan.end_ms), mag))


def _plan_rate_limits(plan: _Plan, rng: np.random.Generator, days: float) -> list[Incident]:
    """Short 429 bursts on one tenant-model route: background realism, not graded incidents."""
    bursts: list[Incident] = []
    for _ in range(max(1, int(rng.poisson(2.0 * days)))):
        route = int(rng.choice(len(plan.route_p), p=plan.route_p))
        app, model = int(plan.route_app[route]), int(plan.route_model[route])
        length = int(rng.integers(5, 21)) * MINUTE_MS
        begin = int(rng.integers(plan.start_ms, max(plan.start_ms + 1, plan.end_ms - length)))
        begin -= begin % MINUTE_MS
        rate = round(float(rng.uniform(0.25, 0.5)), 2)
        plan.rate_limits.append(_Window(app, model, begin, begin + length, rate))
        bursts.append(
            Incident(
                kind="rate_limit_burst",
                tenant_id=plan.apps[app].tenant_id,
                asset_id=plan.apps[app].asset_id,
                model=MODELS[model].name,
                metric="rate_limited_rate",
                start=from_epoch_ms(begin),
                end=from_epoch_ms(begin + length),
                magnitude=rate,
            )
        )
    return bursts


ROLLOUT_SLOWDOWN = 2.5


def _plan_rollout(plan: _Plan, rng: np.random.Generator, before_end_ms: int) -> Incident:
    """A model-version rollout ``before_end_ms`` before the window end, lasting to the end: the
    busiest tenant's busiest chat model gets a new version (a registry update) and its requests
    from that tenant's applications slow down ``ROLLOUT_SLOWDOWN`` times."""
    tenant = 0
    mine = plan.app_tenant[plan.route_app] == tenant
    share = np.bincount(
        plan.route_model, plan.route_p * mine * ~_IS_EMBEDDING[plan.route_model], len(MODELS)
    )
    model = int(np.argmax(share))
    offset = int(rng.integers(5, 20)) * MINUTE_MS
    start = plan.end_ms - before_end_ms + offset
    start -= start % MINUTE_MS
    apps = sorted({int(a) for a in plan.route_app[mine & (plan.route_model == model)]})
    for app in apps:
        plan.latency.append(_Window(app, model, start, plan.end_ms, ROLLOUT_SLOWDOWN))
    plan.rollouts.append((start, plan.tenants[tenant], MODELS[model].name))
    return Incident(
        kind="model_rollout",
        tenant_id=plan.tenants[tenant],
        asset_id=None,
        model=MODELS[model].name,
        metric="latency_ms",
        start=from_epoch_ms(start),
        end=from_epoch_ms(plan.end_ms),
        magnitude=ROLLOUT_SLOWDOWN,
    )
