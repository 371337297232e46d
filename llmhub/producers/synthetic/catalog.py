"""Shared definitions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llmhub.contract.topics import BY_FAMILY

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

_STREAM_PLAN = 0
_STREAM_TELEMETRY = 1
_STREAM_SECURITY = 2
_STREAM_GOVERNANCE = 3
_STREAM_COST = 4
_STREAM_REGISTRY = 5

_TOPIC = {family: spec.topic for family, spec in BY_FAMILY.items()}
_SOURCE = {family: spec.source_module for family, spec in BY_FAMILY.items()}
