"""Synthetic LLM traffic for demos, tests and benchmarks, with injected incidents as ground truth.

``generate`` plans a window of traffic (tenants, applications, models, the per-minute arrival
counts and the incidents) and returns a ``SyntheticTraffic`` whose ``iter_messages`` produces the
events of all five families one hour of event time at a time, so ten million events never sit in
memory. Everything random is drawn from numpy generators seeded with ``(seed, stream, hour)``:
the same seed gives byte-identical messages, however the stream is consumed.

The per-request model (tokens, latency, time to first token, cost) is public so that the trace
replays in ``llmhub.producers.replay`` fill what a trace lacks with the same numbers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from llmhub.contract.models import SCHEMA_VERSION
from llmhub.contract.topics import BY_FAMILY
from llmhub.producers.sink import Message

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000


@dataclass(frozen=True)
class ModelSpec:
    """A model the synthetic tenants call: list prices and a latency profile.

    Latency is ``ttft + output_tokens * ms_per_output_token`` with log-normal noise on both
    terms; ``ttft_ms`` is the median time to first token for a ~1k-token prompt.
    """

    provider: str
    name: str
    snapshot: str
    operation: str
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    cache_read_usd_per_mtok: float
    ttft_ms: float
    ms_per_output_token: float


# List prices in USD per 1M tokens (input / output / cached input), checked on 2026-11-26 against
# litellm's model_prices_and_context_window_backup.json (copied into ../shared/data). That file
# has no gemini-2.0-flash entry; its price is Google's Gemini API pricing page (2025). Latency
# profiles are round numbers in line with public provider benchmarks, not measurements. Provider
# names are the OpenTelemetry gen_ai.provider.name values.
# fmt: off
_MODEL_TABLE: tuple[tuple[str, str, str, str, float, float, float, float, float], ...] = (
    # provider, model, response snapshot, operation, $/1M in, out, cached in, TTFT ms, ms/token
    ("openai", "gpt-4o", "gpt-4o-2024-08-06", "chat", 2.50, 10.00, 1.25, 450, 12),
    ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", "chat", 0.15, 0.60, 0.075, 350, 9),
    ("anthropic", "claude-sonnet-4", "claude-sonnet-4-20250514", "chat", 3, 15, 0.30, 900, 16),
    ("anthropic", "claude-haiku-4-5", "claude-haiku-4-5-20251001", "chat", 1, 5, 0.10, 500, 8),
    ("gcp.gemini", "gemini-2.0-flash", "gemini-2.0-flash-001", "chat", 0.10, 0.40, 0.025, 350, 5.5),
    ("mistral_ai", "mistral-large-latest", "mistral-large-2512", "chat", 0.5, 1.5, 0.05, 500, 20),
    ("mistral_ai", "mistral-small-latest", "mistral-small-2506", "chat", 0.15, 0.6, 0.015, 300, 8),
    ("openai", "text-embedding-3-small", "text-embedding-3-small", "embeddings", 0.02, 0, 0, 60, 0),
)
# fmt: on
MODELS: tuple[ModelSpec, ...] = tuple(ModelSpec(*row) for row in _MODEL_TABLE)
MODEL_INDEX: dict[str, int] = {spec.name: i for i, spec in enumerate(MODELS)}
_EMBEDDING_MODEL = MODEL_INDEX["text-embedding-3-small"]

_PRICE_IN = np.array([m.input_usd_per_mtok for m in MODELS]) / 1e6
_PRICE_OUT = np.array([m.output_usd_per_mtok for m in MODELS]) / 1e6
_PRICE_CACHE = np.array([m.cache_read_usd_per_mtok for m in MODELS]) / 1e6
_TTFT_MS = np.array([m.ttft_ms for m in MODELS])
_MS_PER_TOKEN = np.array([m.ms_per_output_token for m in MODELS])
_IS_EMBEDDING = np.array([m.operation == "embeddings" for m in MODELS])

# (operation -> median, sigma) of log-normal token counts, before the application's scale.
_CHAT_INPUT = (900.0, 0.9)
_CHAT_OUTPUT = (220.0, 0.75)
_EMBED_INPUT = (350.0, 0.8)
_MAX_INPUT_TOKENS = 200_000
_MAX_OUTPUT_TOKENS = 16_000
_CACHE_HIT_RATE = 0.35

FINISH_REASONS: tuple[str, ...] = ("stop", "length", "tool_calls")
_FINISH_P = (0.92, 0.05, 0.03)

# error.type values; 429 is the rate limit, which the contract derives as status rate_limited.
ERROR_TYPES: tuple[str, ...] = ("429", "500", "503", "timeout", "400")
_ERROR_STATUS = (429, 500, 503, 0, 400)
_SERVER_ERROR_P = (0.0, 0.35, 0.35, 0.2, 0.1)
_BASE_ERROR_RATE = 0.012
_BASE_RATE_LIMIT = 0.003

_TENANT_NAMES = ("acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "tyrell")


@dataclass(frozen=True)
class _AppKind:
    name: str
    input_scale: float
    output_scale: float
    chat_models: tuple[str, ...]
    embedding_share: float


_APP_KINDS: tuple[_AppKind, ...] = (
    _AppKind("support-bot", 1.0, 1.0, ("gpt-4o-mini", "claude-haiku-4-5", "gemini-2.0-flash"), 0),
    _AppKind("code-assistant", 2.5, 1.6, ("claude-sonnet-4", "gpt-4o"), 0.0),
    _AppKind(
        "doc-search", 2.0, 0.7, ("gpt-4o-mini", "gemini-2.0-flash", "mistral-small-latest"), 0.45
    ),
    _AppKind(
        "summarizer", 3.0, 0.5, ("claude-haiku-4-5", "gpt-4o-mini", "mistral-large-latest"), 0.0
    ),
    _AppKind("sales-copilot", 1.2, 1.2, ("gpt-4o", "claude-sonnet-4", "mistral-large-latest"), 0),
    _AppKind(
        "translator", 0.6, 0.8, ("gemini-2.0-flash", "mistral-small-latest", "gpt-4o-mini"), 0.0
    ),
)

# Sentinel alerts: (alert_type, detector, base weight, weight during a burst, summary).
_ALERTS: tuple[tuple[str, str, float, float, str], ...] = (
    ("prompt_injection", "sentinel.prompt_guard", 0.35, 0.80, "Instruction override in input"),
    ("jailbreak", "sentinel.jailbreak_classifier", 0.20, 0.10, "Role-play jailbreak pattern"),
    ("pii_leak", "sentinel.pii_scanner", 0.20, 0.04, "Personal data in model output"),
    ("secret_leak", "sentinel.secret_scanner", 0.08, 0.02, "Credential-like string in output"),
    ("data_exfiltration", "sentinel.exfil_heuristics", 0.05, 0.02, "Bulk data export attempt"),
    ("toxic_output", "sentinel.toxicity", 0.12, 0.02, "Toxic content in model output"),
)
_SECURITY_RATE = 0.035

# Policy Engine: (policy_id, policy_name, violation_type, weight, blocking action).
_POLICIES: tuple[tuple[str, str, str, float, str], ...] = (
    ("pol-pii-prompt", "No personal data in prompts", "pii_in_prompt", 0.35, "redacted"),
    ("pol-approved-models", "Approved models only", "disallowed_model", 0.15, "blocked"),
    ("pol-eu-residency", "EU data residency", "data_residency", 0.10, "blocked"),
    ("pol-acceptable-use", "Acceptable use", "content_policy", 0.25, "blocked"),
    ("pol-token-budget", "Per-request token budget", "token_budget_exceeded", 0.15, "flagged"),
)
_GOVERNANCE_RATE = 0.025

_SEVERITIES = ("info", "low", "medium", "high", "critical")

# Real billing never matches metered usage exactly (rounding, late usage, credits).
_BILLING_NOISE_SD = 0.008
_BILLING_NOISE_MAX = 0.02
_BILLING_DELAY_MS = 15 * MINUTE_MS

_STREAM_PLAN, _STREAM_TELEMETRY, _STREAM_SECURITY, _STREAM_GOVERNANCE = 0, 1, 2, 3
_STREAM_COST, _STREAM_REGISTRY = 4, 5

_TOPIC = {family: spec.topic for family, spec in BY_FAMILY.items()}
_SOURCE = {family: spec.source_module for family, spec in BY_FAMILY.items()}


# ----------------------------------------------------------------------------------------------
# The per-request model, shared with the trace replays.


def model_index(name: str) -> int:
    """Return the index of model ``name`` in ``MODELS`` (KeyError names the known models)."""
    try:
        return MODEL_INDEX[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {sorted(MODEL_INDEX)}") from None


def sample_timings(
    rng: np.random.Generator,
    model_idx: np.ndarray,
    input_tokens: np.ndarray,
    output_tokens: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw end-to-end latency and time to first token for successful requests.

    Args:
        rng: Source of randomness.
        model_idx: Index into ``MODELS`` per request.
        input_tokens: Prompt tokens per request.
        output_tokens: Generated tokens per request.

    Returns:
        ``(latency_ms, ttft_ms)`` as float arrays; ``ttft_ms`` is -1 for embeddings, which do
        not stream.
    """
    n = len(model_idx)
    prompt = np.asarray(input_tokens, dtype=np.float64)
    embed = _IS_EMBEDDING[model_idx]
    ttft = _TTFT_MS[model_idx] * (1.0 + prompt / 8_000.0) * rng.lognormal(0.0, 0.35, n)
    decode = output_tokens * _MS_PER_TOKEN[model_idx] * rng.lognormal(0.0, 0.2, n)
    latency = ttft + decode
    embed_latency = _TTFT_MS[model_idx] * (1.0 + prompt / 4_000.0) * rng.lognormal(0.0, 0.3, n)
    latency = np.where(embed, embed_latency, latency)
    ttft = np.where(embed, -1.0, ttft)
    return latency, ttft


def request_cost(
    model_idx: np.ndarray,
    input_tokens: np.ndarray,
    output_tokens: np.ndarray,
    cache_read_tokens: np.ndarray | None = None,
) -> np.ndarray:
    """Cost in USD of each request at list price (cached input tokens at the cache price).

    Args:
        model_idx: Index into ``MODELS`` per request.
        input_tokens: Prompt tokens, including the cached ones.
        output_tokens: Generated tokens.
        cache_read_tokens: Prompt tokens served from the provider's cache, or None for none.

    Returns:
        Float array of USD amounts.
    """
    cached = np.zeros(len(model_idx)) if cache_read_tokens is None else cache_read_tokens
    return (
        (input_tokens - cached) * _PRICE_IN[model_idx]
        + cached * _PRICE_CACHE[model_idx]
        + output_tokens * _PRICE_OUT[model_idx]
    )


_HEX_PAIRS = np.array([list(f"{i:02x}".encode()) for i in range(256)], dtype=np.uint8)
_UUID_HEX_COLUMNS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])


def uuid4_strings(rng: np.random.Generator, n: int) -> list[str]:
    """Return ``n`` random (version 4) UUID strings drawn from ``rng``, vectorised.

    ``str(uuid.UUID(int=..., version=4))`` per event costs more than the rest of an event's
    generation, so the hex text is assembled with numpy instead.
    """
    raw = np.frombuffer(rng.bytes(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    text = np.full((n, 36), ord("-"), dtype=np.uint8)
    text[:, _UUID_HEX_COLUMNS] = _HEX_PAIRS[raw].reshape(n, 32)
    return text.view("S36").ravel().astype("U36").tolist()


def iso_utc(timestamp_ms: np.ndarray) -> list[str]:
    """Format epoch milliseconds as ISO-8601 UTC strings with a ``Z`` suffix, vectorised."""
    stamps = np.asarray(timestamp_ms, dtype="int64").astype("datetime64[ms]")
    return np.datetime_as_string(stamps, unit="ms", timezone="UTC").tolist()


def to_epoch_ms(moment: datetime) -> int:
    """Epoch milliseconds of ``moment`` (a naive datetime is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def from_epoch_ms(value: int) -> datetime:
    """UTC datetime of epoch milliseconds ``value``."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(value))


@dataclass
class TelemetryBatch:
    """Column arrays of telemetry events, encoded into messages by ``encode_telemetry``.

    Sentinels mark absent optional fields: -1 for ``ttft_ms``, ``finish_reason`` and
    ``error_type`` (indexes into ``FINISH_REASONS`` and ``ERROR_TYPES``), 0 for ``status_code``.
    A None column omits the field from every event.
    """

    timestamp_ms: np.ndarray
    event_ids: list[str]
    tenant_ids: list[str]
    asset_ids: list[str]
    model_idx: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    latency_ms: np.ndarray
    ttft_ms: np.ndarray
    cost_usd: np.ndarray
    cache_read_tokens: np.ndarray | None = None
    status_code: np.ndarray | None = None
    error_type: np.ndarray | None = None
    finish_reason: np.ndarray | None = None
    user_ids: list[str] | None = None
    severity: list[str] | None = None
    attributes: list[dict[str, Any]] | None = None
    constant_attributes: dict[str, Any] | None = None


def encode_telemetry(batch: TelemetryBatch) -> list[Message]:
    """Serialise a ``TelemetryBatch`` into ``llm.telemetry`` messages keyed by application.

    Keys are ``tenant_id/asset_id``: one application's requests stay ordered in one partition,
    and partitions fill evenly (keying by tenant left a 7:1 imbalance with a Zipf tenant mix).

    This loop is the generator's hot path: columns are converted to Python lists once and the
    per-model constants are looked up from tuples, so the work per event is one dict and one
    ``orjson.dumps``.
    """
    n = len(batch.event_ids)
    topic = _TOPIC["telemetry"]
    source = _SOURCE["telemetry"]
    none_column = [None] * n
    model_static = [
        (m.operation, m.provider, m.name, m.snapshot, m.operation == "chat") for m in MODELS
    ]
    finish_lists = [[reason] for reason in FINISH_REASONS]
    keys: dict[str, bytes] = {}
    constant = batch.constant_attributes or {}
    columns = zip(
        batch.timestamp_ms.tolist(),
        iso_utc(batch.timestamp_ms),
        batch.event_ids,
        batch.tenant_ids,
        batch.asset_ids,
        batch.model_idx.tolist(),
        batch.input_tokens.tolist(),
        batch.output_tokens.tolist(),
        np.round(batch.latency_ms, 1).tolist(),
        np.round(batch.ttft_ms, 1).tolist(),
        np.round(batch.cost_usd, 8).tolist(),
        none_column if batch.cache_read_tokens is None else batch.cache_read_tokens.tolist(),
        none_column if batch.status_code is None else batch.status_code.tolist(),
        none_column if batch.error_type is None else batch.error_type.tolist(),
        none_column if batch.finish_reason is None else batch.finish_reason.tolist(),
        none_column if batch.user_ids is None else batch.user_ids,
        ["info"] * n if batch.severity is None else batch.severity,
        none_column if batch.attributes is None else batch.attributes,
        strict=True,
    )
    messages: list[Message] = []
    append = messages.append
    dumps = orjson.dumps
    for (
        ts,
        occurred,
        event_id,
        tenant,
        asset,
        model,
        tokens_in,
        tokens_out,
        latency,
        ttft,
        cost,
        cached,
        status,
        error,
        finish,
        user,
        severity,
        extra,
    ) in columns:
        operation, provider, request_model, response_model, _ = model_static[model]
        body: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": request_model,
            "gen_ai.response.model": response_model,
            "gen_ai.usage.input_tokens": tokens_in,
            "gen_ai.usage.output_tokens": tokens_out,
        }
        if cached is not None:
            body["gen_ai.usage.cache_read.input_tokens"] = cached
        if finish is not None and finish >= 0:
            body["gen_ai.response.finish_reasons"] = finish_lists[finish]
        body["latency_ms"] = latency
        if ttft >= 0:
            body["time_to_first_token_ms"] = ttft
        body["cost_usd"] = cost
        if status:
            body["http.response.status_code"] = status
        if error is not None and error >= 0:
            body["error.type"] = ERROR_TYPES[error]
        if user is not None:
            body["user.id"] = user
        if constant:
            body.update(constant)
        if extra:
            body.update(extra)
        key = keys.get(asset)
        if key is None:
            key = keys[asset] = f"{tenant}/{asset}".encode()
        event = {
            "event_id": event_id,
            "event_type": "llm_request",
            "source_module": source,
            "occurred_at": occurred,
            "tenant_id": tenant,
            "asset_id": asset,
            "severity": severity,
            "schema_version": SCHEMA_VERSION,
            "body": body,
        }
        # orjson's result keeps a ~8 KiB buffer whatever the event's size; a right-sized copy
        # keeps an hour of messages (or a test's list) to ~1 KiB each.
        append(Message(topic, key, memoryview(dumps(event)).tobytes(), ts))
    return messages


def _envelope(
    family: str,
    event_type: str,
    event_id: str,
    timestamp_ms: int,
    occurred_at: str,
    tenant_id: str,
    asset_id: str,
    severity: str,
    body: dict[str, Any],
) -> Message:
    event = {
        "event_id": event_id,
        "event_type": event_type,
        "source_module": _SOURCE[family],
        "occurred_at": occurred_at,
        "tenant_id": tenant_id,
        "asset_id": asset_id,
        "severity": severity,
        "schema_version": SCHEMA_VERSION,
        "body": body,
    }
    value = memoryview(orjson.dumps(event)).tobytes()
    return Message(_TOPIC[family], tenant_id.encode(), value, int(timestamp_ms))


# ----------------------------------------------------------------------------------------------
# The traffic plan.


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


def _plan_incidents(plan: _Plan, rng: np.random.Generator) -> list[Incident]:
    """Place one incident of each kind in its own time slot, on busy enough targets."""
    span = plan.end_ms - plan.start_ms
    lo = plan.start_ms + span // 10
    slot = (plan.end_ms - span // 20 - lo) // 4
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
        kind: str, metric: str, app: int, model: int, bounds: tuple[int, int], mag: float
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
        return _Window(app, model, bounds[0], bounds[1], mag)

    model = pick(model_share, apps=False)
    plan.latency.append(add("latency_regression", "latency_ms", -1, model, window(0, 3), 3.0))
    app = pick(chat_app_share)
    plan.cost.append(add("cost_spike", "cost_usd", app, -1, window(1, 2), 5.0))
    app = pick(app_share)
    rate = round(float(rng.uniform(0.3, 0.5)), 2)
    plan.errors.append(add("error_storm", "error_rate", app, -1, window(2, 1), rate))
    app = pick(app_share)
    plan.security.append(add("security_burst", "security_alerts", app, -1, window(3, 1), 20.0))
    return incidents


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


# ----------------------------------------------------------------------------------------------
# Per-hour generation.


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


def _telemetry_chunk(plan: _Plan, chunk: int, m0: int, m1: int) -> _TelemetryChunk:
    rng = np.random.default_rng([plan.seed, _STREAM_TELEMETRY, chunk])
    counts = plan.minute_counts[m0:m1]
    n = int(counts.sum())
    minute = np.repeat(np.arange(m0, m1, dtype=np.int64), counts)
    ts = np.sort(plan.start_ms + minute * MINUTE_MS + rng.integers(0, MINUTE_MS, n))

    route = rng.choice(len(plan.route_p), size=n, p=plan.route_p)
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
        tokens_in[hit] = np.rint(tokens_in[hit] * w.magnitude).astype(np.int64)
        tokens_out[hit] = np.rint(tokens_out[hit] * w.magnitude).astype(np.int64)
    tokens_out[embed] = 0
    hit_cache = (rng.random(n) < _CACHE_HIT_RATE) & ~embed
    cache = np.where(hit_cache, (tokens_in * rng.uniform(0.2, 0.9, n)).astype(np.int64), 0)
    finish = rng.choice(len(FINISH_REASONS), size=n, p=_FINISH_P)

    latency, ttft = sample_timings(rng, model, tokens_in, tokens_out)
    for w in plan.latency:
        hit = w.mask(ts, app, model)
        latency[hit] *= w.magnitude
        ttft[hit] = np.where(ttft[hit] >= 0, ttft[hit] * w.magnitude, -1.0)

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


# ----------------------------------------------------------------------------------------------
# Public entry point.


@dataclass(frozen=True)
class SyntheticTraffic:
    """A planned window of synthetic traffic; messages are produced lazily, hour by hour.

    Attributes:
        events: Number of telemetry events (the other families come on top, about 6%).
        seed: The seed every random draw derives from.
        start: Window start (inclusive), UTC.
        end: Window end (exclusive), UTC.
        tenants: Tenant ids, busiest first.
        applications: Every tenant application with the models it calls.
        incidents: Ground truth of the injected incidents (empty when disabled).
        rate_limit_bursts: Short background 429 bursts; realistic noise, not graded incidents.
    """

    events: int
    seed: int
    start: datetime
    end: datetime
    tenants: tuple[str, ...]
    applications: tuple[Application, ...]
    incidents: list[Incident]
    rate_limit_bursts: list[Incident]
    _plan: _Plan = field(repr=False, compare=False)

    def iter_messages(self) -> Iterator[Message]:
        """Yield every message: registrations first, then one event-time hour at a time.

        Within an hour, telemetry, security, governance, registry updates and billing records
        follow each other, each family sorted by time; telemetry is sorted over the whole window.
        Billing records for a UTC day follow the hour that closes it (the last, partial day's at
        the end), stamped 15 minutes after midnight or at the window end, whichever is earlier.
        """
        plan = self._plan
        first, updates = _registry_messages(plan)
        yield from first
        billing = _Billing(plan)
        n_minutes = len(plan.minute_counts)
        for chunk, m0 in enumerate(range(0, n_minutes, 60)):
            m1 = min(m0 + 60, n_minutes)
            lo, hi = plan.start_ms + m0 * MINUTE_MS, plan.start_ms + m1 * MINUTE_MS
            tel = _telemetry_chunk(plan, chunk, m0, m1)
            yield from tel.messages
            yield from _security_chunk(plan, chunk, tel)
            yield from _governance_chunk(plan, chunk, tel)
            yield from (m for m in updates if lo <= (m.timestamp_ms or 0) < hi)
            billing.add(tel)
            yield from billing.close(hi)
        yield from billing.close(None)

    def __iter__(self) -> Iterator[Message]:
        return self.iter_messages()

    def messages(self) -> list[Message]:
        """All messages in one list (fine for tests and demos; stream large runs instead)."""
        return list(self.iter_messages())

    def ground_truth(self) -> dict[str, Any]:
        """The incidents and the window as a JSON-ready dict."""
        return {
            "seed": self.seed,
            "events": self.events,
            "start": self.start.isoformat().replace("+00:00", "Z"),
            "end": self.end.isoformat().replace("+00:00", "Z"),
            "incidents": [incident.to_dict() for incident in self.incidents],
            "rate_limit_bursts": [burst.to_dict() for burst in self.rate_limit_bursts],
        }

    def write_ground_truth(self, path: Path) -> None:
        """Write ``ground_truth()`` to ``path`` as indented JSON."""
        Path(path).write_text(json.dumps(self.ground_truth(), indent=2) + "\n")


def generate(
    events: int,
    days: float = 1.0,
    seed: int = 0,
    end: datetime | None = None,
    incidents: bool = True,
) -> SyntheticTraffic:
    """Plan ``events`` telemetry requests over ``days`` ending at ``end``, with the other families.

    Arrivals follow a daily cycle (peak 15:00 UTC, trough 03:00 at about a quarter of the peak)
    and a weekend dip (45% of a weekday); 4-6 tenants with Zipf-like shares run 2-4 applications
    each over a mix of OpenAI, Anthropic, Google and Mistral models. Security alerts (~3.5% of
    requests), policy violations (~2.5%), daily billing records per tenant and model (within
    +-2% of the metered cost) and registry events come on top, so telemetry is about 94% of the
    messages. Nothing is generated until the result is iterated.

    Args:
        events: Exact number of telemetry events.
        days: Window length in days (rounded to whole minutes, at least one).
        seed: Non-negative seed; the same seed and ``end`` give identical messages.
        end: Window end; default now (UTC) truncated to the minute. Naive times are UTC.
        incidents: Inject a latency regression, a cost spike, an error storm and a security
            burst, one each, in separate time slots.

    Returns:
        The planned traffic, with its ground-truth incidents.
    """
    if events < 0:
        raise ValueError("events must be >= 0")
    if days <= 0:
        raise ValueError("days must be > 0")
    if seed < 0:
        raise ValueError("seed must be >= 0")
    if end is None:
        end = datetime.now(UTC).replace(second=0, microsecond=0)
    end_ms = to_epoch_ms(end)
    n_minutes = max(1, round(days * 1440))
    start_ms = end_ms - n_minutes * MINUTE_MS
    plan = _build_plan(events, start_ms, n_minutes, seed)
    truth = []
    if incidents:
        truth = _plan_incidents(plan, np.random.default_rng([seed, _STREAM_PLAN, 1]))
    bursts_rng = np.random.default_rng([seed, _STREAM_PLAN, 2])
    bursts = _plan_rate_limits(plan, bursts_rng, n_minutes / 1440)
    return SyntheticTraffic(
        events=events,
        seed=seed,
        start=from_epoch_ms(start_ms),
        end=from_epoch_ms(end_ms),
        tenants=tuple(plan.tenants),
        applications=tuple(plan.apps),
        incidents=truth,
        rate_limit_bursts=bursts,
        _plan=plan,
    )
