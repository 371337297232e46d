"""Per-hour generation: the events of every family for one hour of event time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from llmhub.producers.sink import Message
from llmhub.producers.synthetic.catalog import (
    _ALERTS,
    _BASE_ERROR_RATE,
    _BASE_RATE_LIMIT,
    _BILLING_DELAY_MS,
    _BILLING_NOISE_MAX,
    _BILLING_NOISE_SD,
    _CACHE_HIT_RATE,
    _CHAT_INPUT,
    _CHAT_OUTPUT,
    _EMBED_INPUT,
    _ERROR_STATUS,
    _FINISH_P,
    _GOVERNANCE_RATE,
    _IS_EMBEDDING,
    _MAX_INPUT_TOKENS,
    _MAX_OUTPUT_TOKENS,
    _POLICIES,
    _SECURITY_RATE,
    _SERVER_ERROR_P,
    _SEVERITIES,
    _STREAM_COST,
    _STREAM_GOVERNANCE,
    _STREAM_REGISTRY,
    _STREAM_SECURITY,
    _STREAM_TELEMETRY,
    DAY_MS,
    ERROR_TYPES,
    FINISH_REASONS,
    MINUTE_MS,
    MODEL_INDEX,
    MODELS,
)
from llmhub.producers.synthetic.plan import _Plan
from llmhub.producers.synthetic.requests import (
    TelemetryBatch,
    _envelope,
    encode_telemetry,
    from_epoch_ms,
    iso_utc,
    request_cost,
    sample_timings,
    uuid4_strings,
)


@dataclass
class _TelemetryChunk:
    ts: np.ndarray
    event_ids: list[str]
    app: np.ndarray
    model: np.ndarray
    tenant: np.ndarray
    ok: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    cache_read: np.ndarray
    cost: np.ndarray
    messages: list[Message]


def _lognormal_tokens(
    rng: np.random.Generator, median: np.ndarray, sigma: float, cap: int
) -> np.ndarray:
    draw = median * rng.lognormal(0.0, sigma, len(median))
    return np.clip(np.rint(draw), 1, cap).astype(np.int64)


# Long on purpose: every column of a chunk comes from one generator, and the order of the draws
# is what makes a seed reproduce its messages byte for byte; one function keeps that order visible.
def _telemetry_chunk(plan: _Plan, chunk: int, m0: int, m1: int) -> _TelemetryChunk:
    rng = np.random.default_rng([plan.seed, _STREAM_TELEMETRY, chunk])
    counts = plan.minute_counts[m0:m1]
    n = int(counts.sum())
    minute = np.repeat(np.arange(m0, m1, dtype=np.int64), counts)
    ts = np.sort(plan.start_ms + minute * MINUTE_MS + rng.integers(0, MINUTE_MS, n))

    route = rng.choice(len(plan.route_p), size=n, p=plan.route_p)
    if plan.stops:
        # A route that stops serves nothing; the other routes keep their arrivals.
        served = np.ones(n, dtype=bool)
        for w in plan.stops:
            served &= ~w.mask(ts, plan.route_app[route], plan.route_model[route])
        ts, route, n = ts[served], route[served], int(served.sum())
    app = plan.route_app[route]
    model = plan.route_model[route]
    tenant = plan.app_tenant[app]
    embed = _IS_EMBEDDING[model]

    input_median = np.where(embed, _EMBED_INPUT[0], _CHAT_INPUT[0] * plan.app_in_scale[app])
    tokens_in = _lognormal_tokens(rng, input_median, _CHAT_INPUT[1], _MAX_INPUT_TOKENS)
    tokens_out = _lognormal_tokens(
        rng, _CHAT_OUTPUT[0] * plan.app_out_scale[app], _CHAT_OUTPUT[1], _MAX_OUTPUT_TOKENS
    )
    for w in plan.cost:
        # A runaway prompt loop or context stuffing: both directions grow, so cost grows alike.
        hit = w.mask(ts, app, model)
        factor = w.factor(ts[hit])
        tokens_in[hit] = np.rint(tokens_in[hit] * factor).astype(np.int64)
        tokens_out[hit] = np.rint(tokens_out[hit] * factor).astype(np.int64)
    tokens_out[embed] = 0
    hit_cache = (rng.random(n) < _CACHE_HIT_RATE) & ~embed
    cache = np.where(hit_cache, (tokens_in * rng.uniform(0.2, 0.9, n)).astype(np.int64), 0)
    finish = rng.choice(len(FINISH_REASONS), size=n, p=_FINISH_P)

    latency, ttft = sample_timings(rng, model, tokens_in, tokens_out)
    for w in plan.latency:
        hit = w.mask(ts, app, model)
        factor = w.factor(ts[hit])
        latency[hit] *= factor
        ttft[hit] = np.where(ttft[hit] >= 0, ttft[hit] * factor, -1.0)

    p_limit = np.full(n, _BASE_RATE_LIMIT)
    for w in plan.rate_limits:
        p_limit[w.mask(ts, app, model)] = w.magnitude
    p_error = np.full(n, _BASE_ERROR_RATE)
    for w in plan.errors:
        p_error[w.mask(ts, app, model)] = w.magnitude
    u = rng.random(n)
    limited = u < p_limit
    failed = ~limited & (u < p_limit + p_error)
    error = np.full(n, -1, dtype=np.int64)
    error[limited] = 0
    error[failed] = rng.choice(len(ERROR_TYPES), size=int(failed.sum()), p=_SERVER_ERROR_P)
    status = np.where(error >= 0, np.array(_ERROR_STATUS)[error], 200)
    bad = error >= 0
    error_latency = np.select(
        [error == 0, error == 3, error == 4],
        [
            rng.lognormal(np.log(150.0), 0.5, n),
            rng.uniform(30_000.0, 60_000.0, n),
            rng.lognormal(np.log(120.0), 0.4, n),
        ],
        rng.lognormal(np.log(800.0), 0.7, n),
    )
    latency = np.where(bad, error_latency, latency)
    ttft = np.where(bad, -1.0, ttft)
    # A failed call returns no usage, so the gateway records no tokens and nothing is billed.
    tokens_in[bad] = 0
    tokens_out[bad] = 0
    cache[bad] = 0
    finish = np.where(bad | embed, -1, finish)
    cost = request_cost(model, tokens_in, tokens_out, cache)

    user_offsets = np.cumsum([0] + [len(u) for u in plan.users])
    pool_size = np.array([len(u) for u in plan.users])[tenant]
    user_flat = user_offsets[tenant] + (rng.zipf(1.3, n) - 1) % pool_size
    all_users = np.array([u for pool in plan.users for u in pool], dtype=object)
    severity_idx = np.where(limited, 1, np.where(failed, 2, 0))

    event_ids = uuid4_strings(rng, n)
    batch = TelemetryBatch(
        timestamp_ms=ts,
        event_ids=event_ids,
        tenant_ids=np.array(plan.tenants, dtype=object)[tenant].tolist(),
        asset_ids=np.array([a.asset_id for a in plan.apps], dtype=object)[app].tolist(),
        model_idx=model,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        latency_ms=latency,
        ttft_ms=ttft,
        cost_usd=cost,
        cache_read_tokens=cache,
        status_code=status,
        error_type=error,
        finish_reason=finish,
        user_ids=all_users[user_flat].tolist(),
        severity=np.array(_SEVERITIES, dtype=object)[severity_idx].tolist(),
    )
    return _TelemetryChunk(
        ts=ts,
        event_ids=event_ids,
        app=app,
        model=model,
        tenant=tenant,
        ok=~bad,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        cache_read=cache,
        cost=cost,
        messages=encode_telemetry(batch),
    )


def _security_chunk(plan: _Plan, chunk: int, tel: _TelemetryChunk) -> list[Message]:
    rng = np.random.default_rng([plan.seed, _STREAM_SECURITY, chunk])
    n = len(tel.ts)
    p = np.full(n, _SECURITY_RATE)
    in_burst = np.zeros(n, dtype=bool)
    for w in plan.security:
        hit = w.mask(tel.ts, tel.app, tel.model)
        p[hit] = min(0.95, _SECURITY_RATE * w.magnitude)
        in_burst |= hit
    picked = np.flatnonzero(rng.random(n) < p)
    k = len(picked)
    base_p = np.array([a[2] for a in _ALERTS])
    burst_p = np.array([a[3] for a in _ALERTS])
    kind = np.where(
        in_burst[picked],
        rng.choice(len(_ALERTS), size=k, p=burst_p / burst_p.sum()),
        rng.choice(len(_ALERTS), size=k, p=base_p / base_p.sum()),
    )
    confidence = np.round(rng.beta(8.0, 2.0, k), 3)
    # Sentinel scans the prompt inline, so its alert lands a few ms after the request starts.
    ts = tel.ts[picked] + rng.integers(5, 250, k)
    ids = uuid4_strings(rng, k)
    occurred = iso_utc(ts)
    messages = []
    for j in np.argsort(ts, kind="stable").tolist():
        i = int(picked[j])
        alert_type, detector, _, _, summary = _ALERTS[int(kind[j])]
        conf = float(confidence[j])
        blocking = alert_type in ("prompt_injection", "jailbreak", "data_exfiltration")
        leak = alert_type in ("pii_leak", "secret_leak")
        if blocking and conf >= 0.9:
            action = "blocked"
        elif leak and conf >= 0.8:
            action = "redacted"
        else:
            action = "flagged"
        critical = alert_type in ("data_exfiltration", "secret_leak") and conf >= 0.95
        severity = "critical" if critical else "high" if conf >= 0.9 else "medium"
        body = {
            "alert_type": alert_type,
            "detector": detector,
            "action_taken": action,
            "confidence": conf,
            "request_id": tel.event_ids[i],
            "description": summary,
        }
        app = plan.apps[int(tel.app[i])]
        messages.append(
            _envelope(
                "security",
                "threat_detected",
                ids[j],
                int(ts[j]),
                occurred[j],
                app.tenant_id,
                app.asset_id,
                severity,
                body,
            )
        )
    return messages


def _governance_chunk(plan: _Plan, chunk: int, tel: _TelemetryChunk) -> list[Message]:
    rng = np.random.default_rng([plan.seed, _STREAM_GOVERNANCE, chunk])
    n = len(tel.ts)
    picked = np.flatnonzero(rng.random(n) < _GOVERNANCE_RATE)
    k = len(picked)
    weights = np.array([p[3] for p in _POLICIES])
    policy = rng.choice(len(_POLICIES), size=k, p=weights / weights.sum())
    enforce = rng.random(k) < 0.6
    ts = tel.ts[picked] + rng.integers(1, 50, k)
    ids = uuid4_strings(rng, k)
    occurred = iso_utc(ts)
    messages = []
    for j in np.argsort(ts, kind="stable").tolist():
        i = int(picked[j])
        policy_id, policy_name, violation, _, action = _POLICIES[int(policy[j])]
        taken = action if enforce[j] else "flagged"
        severity = "high" if taken == "blocked" else "medium" if taken == "redacted" else "low"
        app = plan.apps[int(tel.app[i])]
        body = {
            "policy_id": policy_id,
            "policy_name": policy_name,
            "violation_type": violation,
            "action_taken": taken,
            "request_id": tel.event_ids[i],
            "description": f"{policy_name}: {violation} on {MODELS[int(tel.model[i])].name}",
        }
        messages.append(
            _envelope(
                "governance",
                "policy_violation",
                ids[j],
                int(ts[j]),
                occurred[j],
                app.tenant_id,
                app.asset_id,
                severity,
                body,
            )
        )
    return messages


def _model_asset_id(tenant_id: str, model: str) -> str:
    return f"model-{tenant_id.removeprefix('tenant-')}-{model}"


def _registry_messages(plan: _Plan) -> tuple[list[Message], list[Message]]:
    """Registrations at the window start, and a few version bumps mid-window."""
    # One function for the same reason as _telemetry_chunk: one generator, one draw order.
    rng = np.random.default_rng([plan.seed, _STREAM_REGISTRY])
    initial: list[tuple[int, str, str, str, dict[str, Any]]] = []
    seen: set[tuple[str, str]] = set()
    for app in plan.apps:
        for model in app.models:
            if (app.tenant_id, model) in seen:
                continue
            seen.add((app.tenant_id, model))
            spec = MODELS[MODEL_INDEX[model]]
            body = {
                "asset_kind": "model",
                "name": model,
                "version": spec.snapshot,
                "provider": spec.provider,
                "model": model,
                "owner": "platform-team",
                "lifecycle_status": "active",
            }
            initial.append((len(initial), "asset_registered", app.tenant_id, model, body))
    for app in plan.apps:
        primary = MODELS[MODEL_INDEX[app.models[0]]]
        body = {
            "asset_kind": "application",
            "name": app.kind,
            "version": "1",
            "provider": primary.provider,
            "model": primary.name,
            "owner": f"team-{app.kind}",
            "lifecycle_status": "active",
            "models": list(app.models),
        }
        initial.append((len(initial), "asset_registered", app.tenant_id, app.asset_id, body))

    span = plan.end_ms - plan.start_ms
    n_updates = min(3, len(plan.apps))
    chosen = rng.choice(len(plan.apps), size=n_updates, replace=False)
    times = np.sort(rng.integers(plan.start_ms + span // 5, plan.end_ms - span // 10, n_updates))
    ids = uuid4_strings(rng, len(initial) + n_updates)

    first = []
    initial_ts = plan.start_ms + np.arange(len(initial))
    initial_at = iso_utc(initial_ts)
    for i, event_type, tenant, asset, body in initial:
        asset_id = asset if body["asset_kind"] == "application" else _model_asset_id(tenant, asset)
        first.append(
            _envelope(
                "registry",
                event_type,
                ids[i],
                int(initial_ts[i]),
                initial_at[i],
                tenant,
                asset_id,
                "info",
                body,
            )
        )
    updates_at = iso_utc(times)
    updates = []
    for j, (a, ts) in enumerate(zip(chosen.tolist(), times.tolist(), strict=True)):
        app = plan.apps[a]
        primary = MODELS[MODEL_INDEX[app.models[0]]]
        body = {
            "asset_kind": "application",
            "name": app.kind,
            "version": "2",
            "provider": primary.provider,
            "model": primary.name,
            "owner": f"team-{app.kind}",
            "lifecycle_status": "active",
            "models": list(app.models),
            "change": "prompt template updated",
        }
        updates.append(
            _envelope(
                "registry",
                "asset_updated",
                ids[len(initial) + j],
                ts,
                updates_at[j],
                app.tenant_id,
                app.asset_id,
                "info",
                body,
            )
        )
    if plan.rollouts:
        # A stream of their own: traffic without rollouts stays byte-identical.
        rollout_ids = uuid4_strings(
            np.random.default_rng([plan.seed, _STREAM_REGISTRY, 1]), len(plan.rollouts)
        )
        rollout_at = iso_utc(np.array([ts for ts, _, _ in plan.rollouts], dtype=np.int64))
        for k, (ts, tenant, model) in enumerate(plan.rollouts):
            spec = MODELS[MODEL_INDEX[model]]
            body = {
                "asset_kind": "model",
                "name": model,
                "version": f"{spec.snapshot}-r2",
                "provider": spec.provider,
                "model": model,
                "owner": "platform-team",
                "lifecycle_status": "active",
                "change": "model version rollout",
            }
            updates.append(
                _envelope(
                    "registry",
                    "asset_updated",
                    rollout_ids[k],
                    ts,
                    rollout_at[k],
                    tenant,
                    _model_asset_id(tenant, model),
                    "info",
                    body,
                )
            )
        updates.sort(key=lambda m: m.timestamp_ms or 0)
    return first, updates


class _Billing:
    """Running per-(UTC day, tenant, model) usage, emitted as billing records once a day closes."""

    def __init__(self, plan: _Plan) -> None:
        self.plan = plan
        self.day0_ms = plan.start_ms - plan.start_ms % DAY_MS
        self.cells = len(plan.tenants) * len(MODELS)
        self.days: dict[int, np.ndarray] = {}

    def add(self, tel: _TelemetryChunk) -> None:
        day = (tel.ts - self.day0_ms) // DAY_MS
        cell = tel.tenant * len(MODELS) + tel.model
        for d in np.unique(day).tolist():
            sel = day == d
            acc = self.days.setdefault(d, np.zeros((5, self.cells)))
            c = cell[sel]
            acc[0] += np.bincount(c, tel.cost[sel], self.cells)
            acc[1] += np.bincount(c, tel.input_tokens[sel], self.cells)
            acc[2] += np.bincount(c, tel.output_tokens[sel], self.cells)
            acc[3] += np.bincount(c, tel.cache_read[sel], self.cells)
            acc[4] += np.bincount(c, tel.ok[sel], self.cells)

    def close(self, until_ms: int | None) -> list[Message]:
        """Records of every day ending at or before ``until_ms`` (None: all remaining days)."""
        messages: list[Message] = []
        for d in sorted(self.days):
            day_start = self.day0_ms + d * DAY_MS
            if until_ms is not None and day_start + DAY_MS > until_ms:
                continue
            messages.extend(self._records(d, day_start, self.days.pop(d)))
        return messages

    def _records(self, d: int, day_start: int, acc: np.ndarray) -> list[Message]:
        plan = self.plan
        rng = np.random.default_rng([plan.seed, _STREAM_COST, d])
        noise = np.clip(
            rng.normal(0.0, _BILLING_NOISE_SD, self.cells), -_BILLING_NOISE_MAX, _BILLING_NOISE_MAX
        )
        ids = uuid4_strings(rng, self.cells)
        ts = min(day_start + DAY_MS + _BILLING_DELAY_MS, plan.end_ms)
        occurred = iso_utc(np.array([ts]))[0]
        day = from_epoch_ms(day_start).date()
        messages = []
        for cell in np.flatnonzero(acc[4] > 0).tolist():
            tenant, model = divmod(cell, len(MODELS))
            spec = MODELS[model]
            tenant_id = plan.tenants[tenant]
            invoice = f"inv-{tenant_id.removeprefix('tenant-')}-{day:%Y%m}-{spec.provider}"
            body = {
                "provider": spec.provider,
                "model": spec.name,
                "input_tokens": int(acc[1, cell]),
                "output_tokens": int(acc[2, cell]),
                "cache_read_tokens": int(acc[3, cell]),
                "request_count": int(acc[4, cell]),
                "cost_usd": round(float(acc[0, cell] * (1.0 + noise[cell])), 6),
                "currency": "USD",
                "billing_period_start": day.isoformat(),
                "billing_period_end": day.isoformat(),
                "invoice_id": invoice,
                "line_item_id": f"{invoice}-{day:%d}-{spec.name}",
            }
            messages.append(
                _envelope(
                    "cost",
                    "billing_record",
                    ids[cell],
                    ts,
                    occurred,
                    tenant_id,
                    _model_asset_id(tenant_id, spec.name),
                    "info",
                    body,
                )
            )
        return messages
