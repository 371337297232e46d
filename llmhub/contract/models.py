"""The event contract: a common envelope and one typed body per source family.

Telemetry body fields use the OpenTelemetry GenAI semantic-convention names where those exist
(``gen_ai.request.model``, ``gen_ai.usage.input_tokens``...) and plain names with a unit suffix
where they do not (``latency_ms``, ``time_to_first_token_ms``, ``cost_usd``). The older names
(``gen_ai.system``, ``gen_ai.usage.prompt_tokens``, ``gen_ai.usage.completion_tokens``) are
accepted and mapped. Body keys the contract does not name are kept in the ``attributes`` JSONB
column of the raw table, so nothing a producer sends is lost.

The JSON Schema files in ``llmhub/contract/schemas`` and ``docs/event-contract.md`` are generated
from these models (``llmhub contract export``).
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

SCHEMA_VERSION = "1.0"
# Checked by pattern in pydantic's core rather than parsed into uuid.UUID objects: same rule,
# a third of the cost per event.
UUID_PATTERN = r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"

# Epoch numbers carry no unit; their magnitude tells it. A seconds value above 1e11 would be
# the year 5138, so anything larger must be ms, then us, then ns.
_EPOCH_UNIT_BOUNDS = ((1e11, 1.0), (1e14, 1e-3), (1e17, 1e-6), (math.inf, 1e-9))


def epoch_to_datetime(value: float) -> datetime:
    """Convert an epoch number in s, ms, us or ns (told apart by magnitude) to a UTC datetime."""
    if not math.isfinite(value):
        raise ValueError("timestamp is not a finite number")
    for bound, scale in _EPOCH_UNIT_BOUNDS:
        if abs(value) < bound:
            try:
                return datetime.fromtimestamp(value * scale, tz=UTC)
            except (OverflowError, OSError, ValueError) as exc:
                # pydantic turns ValueError into a validation error; OverflowError would escape.
                raise ValueError(f"epoch timestamp {value!r} is out of range") from exc
    raise AssertionError("unreachable")


def _epoch_number(value: int | float | str) -> float:
    try:
        return float(value)
    except OverflowError as exc:
        # An integer beyond a double (a few hundred digits): pydantic reports ValueError as a
        # validation error, an OverflowError would escape the dead-letter path.
        raise ValueError(f"epoch timestamp of {len(str(value))} digits is out of range") from exc


def _coerce_timestamp(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("timestamp must be an ISO-8601 string or an epoch number, not a boolean")
    if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
        return epoch_to_datetime(_epoch_number(value))
    return value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


Timestamp = Annotated[
    datetime,
    BeforeValidator(_coerce_timestamp),
    Field(
        description="ISO-8601 with a UTC offset, or epoch seconds/ms/us/ns (unit told apart by "
        "magnitude). Stored in UTC. Naive times are rejected unless the topic has a zone."
    ),
]
Identifier = Annotated[str, Field(min_length=1, max_length=256)]
ShortText = Annotated[str, Field(min_length=1, max_length=256)]


LongText = Annotated[str, Field(max_length=8192)]
Tokens = Annotated[int, Field(ge=0, le=100_000_000, description="Count of tokens.")]
BilledTokens = Annotated[
    int, Field(ge=0, le=9_000_000_000_000_000, description="Tokens billed over the period.")
]


class Severity(StrEnum):
    info = "info"
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


class Body(BaseModel):
    """Base of the family bodies: unknown keys are allowed and kept as attributes."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    def attributes(self) -> dict[str, Any]:
        return dict(self.__pydantic_extra__ or {})


class TelemetryBody(Body):
    """One LLM request as seen by the Observatory (OpenTelemetry GenAI names where they exist)."""

    operation_name: ShortText = Field(
        "chat",
        validation_alias=AliasChoices("gen_ai.operation.name", "operation_name"),
        serialization_alias="gen_ai.operation.name",
        description="gen_ai.operation.name: chat, text_completion, embeddings, ...",
    )
    provider: ShortText = Field(
        validation_alias=AliasChoices("gen_ai.provider.name", "gen_ai.system", "provider"),
        serialization_alias="gen_ai.provider.name",
        description="gen_ai.provider.name (older: gen_ai.system): openai, anthropic, ...",
    )
    request_model: ShortText = Field(
        validation_alias=AliasChoices("gen_ai.request.model", "request_model"),
        serialization_alias="gen_ai.request.model",
        description="gen_ai.request.model: the model the application asked for.",
    )
    response_model: ShortText | None = Field(
        None,
        validation_alias=AliasChoices("gen_ai.response.model", "response_model"),
        serialization_alias="gen_ai.response.model",
        description="gen_ai.response.model: the model that answered (may be a dated snapshot).",
    )
    response_id: ShortText | None = Field(
        None,
        validation_alias=AliasChoices("gen_ai.response.id", "response_id"),
        serialization_alias="gen_ai.response.id",
        description="gen_ai.response.id: the provider's id of the completion.",
    )
    input_tokens: Tokens = Field(
        0,
        validation_alias=AliasChoices(
            "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "input_tokens"
        ),
        serialization_alias="gen_ai.usage.input_tokens",
        description="gen_ai.usage.input_tokens (older: gen_ai.usage.prompt_tokens), tokens.",
    )
    output_tokens: Tokens = Field(
        0,
        validation_alias=AliasChoices(
            "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "output_tokens"
        ),
        serialization_alias="gen_ai.usage.output_tokens",
        description="gen_ai.usage.output_tokens (older: gen_ai.usage.completion_tokens), tokens.",
    )
    cache_read_tokens: Tokens = Field(
        0,
        validation_alias=AliasChoices("gen_ai.usage.cache_read.input_tokens", "cache_read_tokens"),
        serialization_alias="gen_ai.usage.cache_read.input_tokens",
        description="gen_ai.usage.cache_read.input_tokens: input tokens served from cache.",
    )
    finish_reasons: list[Annotated[str, Field(max_length=64)]] | None = Field(
        None,
        max_length=16,
        validation_alias=AliasChoices("gen_ai.response.finish_reasons", "finish_reasons"),
        serialization_alias="gen_ai.response.finish_reasons",
        description="gen_ai.response.finish_reasons: stop, length, tool_calls, ...",
    )
    error_type: ShortText | None = Field(
        None,
        validation_alias=AliasChoices("error.type", "error_type"),
        serialization_alias="error.type",
        description="error.type: the error class when the request failed (e.g. 429, timeout).",
    )
    http_status_code: int | None = Field(
        None,
        ge=100,
        le=599,
        validation_alias=AliasChoices("http.response.status_code", "http_status_code"),
        serialization_alias="http.response.status_code",
        description="http.response.status_code of the provider call.",
    )
    status: Literal["ok", "error", "rate_limited"] | None = Field(
        None,
        description="ok | error | rate_limited. Derived from error.type and the HTTP status "
        "when absent (429 -> rate_limited).",
    )
    latency_ms: float | None = Field(
        None,
        ge=0,
        le=86_400_000,
        description="End-to-end request latency, milliseconds (required, or one of latency_s / "
        "gen_ai.client.operation.duration in seconds).",
    )
    latency_s: float | None = Field(
        None,
        ge=0,
        le=86_400,
        exclude=True,
        validation_alias=AliasChoices("latency_s", "gen_ai.client.operation.duration"),
        description="Latency in seconds (gen_ai.client.operation.duration); mapped to latency_ms.",
    )
    time_to_first_token_ms: float | None = Field(
        None,
        ge=0,
        le=86_400_000,
        description="Time to first streamed token, milliseconds.",
    )
    time_to_first_token_s: float | None = Field(
        None,
        ge=0,
        le=86_400,
        exclude=True,
        validation_alias=AliasChoices("time_to_first_token_s", "gen_ai.server.time_to_first_token"),
        description="Time to first token in seconds (gen_ai.server.time_to_first_token); mapped "
        "to time_to_first_token_ms.",
    )
    cost_usd: float | None = Field(
        None, ge=0, le=1_000_000, description="Cost of the request as computed by the caller, USD."
    )
    user_id: Identifier | None = Field(
        None,
        validation_alias=AliasChoices("user.id", "user_id"),
        serialization_alias="user.id",
        description="user.id: the end user of the application (pseudonymous).",
    )

    # One after-validator for all derived fields: a mode="before" validator would make pydantic
    # build a Python dict of every body first, which doubled validation time (measured).
    @model_validator(mode="after")
    def _derive(self) -> TelemetryBody:
        if self.latency_ms is None:
            if self.latency_s is None:
                raise ValueError("latency_ms (or latency_s) is required")
            object.__setattr__(self, "latency_ms", self.latency_s * 1000.0)
        if self.time_to_first_token_ms is None and self.time_to_first_token_s is not None:
            object.__setattr__(self, "time_to_first_token_ms", self.time_to_first_token_s * 1000.0)
        if self.status is None:
            if self.http_status_code == 429 or self.error_type == "429":
                status = "rate_limited"
            elif self.error_type is not None or (self.http_status_code or 200) >= 400:
                status = "error"
            else:
                status = "ok"
            object.__setattr__(self, "status", status)
        return self


class SecurityBody(Body):
    """A Sentinel threat alert (prompt injection, jailbreak, data leak...)."""

    alert_type: ShortText = Field(
        description="prompt_injection, jailbreak, pii_leak, secret_leak, data_exfiltration, "
        "toxic_output, ..."
    )
    detector: ShortText = Field("unknown", description="The Sentinel detector that fired.")
    action_taken: Literal["blocked", "flagged", "redacted", "allowed"] = Field(
        "flagged", description="What Sentinel did with the request."
    )
    confidence: float | None = Field(None, ge=0, le=1, description="Detector confidence, 0..1.")
    request_id: Identifier | None = Field(None, description="The LLM request the alert is about.")
    description: LongText | None = Field(None, description="Human-readable summary.")


class CostBody(Body):
    """A CostOps billing record: what the provider billed for a model over a period."""

    provider: ShortText = Field(description="Billing provider: openai, anthropic, ...")
    model: ShortText = Field(description="Billed model.")
    # Aggregates over a billing period: far above one request's token bound (a busy tenant's
    # day of gpt-4o passed 1e8 tokens in the 10M-event benchmark and was dead-lettered).
    input_tokens: BilledTokens = 0
    output_tokens: BilledTokens = 0
    cache_read_tokens: BilledTokens = 0
    request_count: int = Field(0, ge=0, description="Requests covered by the record.")
    cost_usd: float = Field(ge=0, le=100_000_000, description="Billed amount, USD.")
    currency: Literal["USD"] = Field(
        "USD", description="Only USD is accepted; convert upstream (no FX table in the hub)."
    )
    billing_period_start: date | None = Field(None, description="First day billed (UTC).")
    billing_period_end: date | None = Field(None, description="Last day billed (UTC).")
    invoice_id: Identifier | None = None
    line_item_id: Identifier | None = None


class GovernanceBody(Body):
    """A Policy Engine violation."""

    policy_id: Identifier = Field(description="Stable id of the violated policy.")
    policy_name: ShortText | None = Field(None, description="Human-readable policy name.")
    violation_type: ShortText = Field(
        description="pii_in_prompt, disallowed_model, data_residency, content_policy, ..."
    )
    action_taken: Literal["blocked", "flagged", "redacted", "allowed"] = "flagged"
    request_id: Identifier | None = None
    description: LongText | None = None


class RegistryBody(Body):
    """A Registry change: a model, prompt, application or policy registered or updated."""

    # A policy is an asset too: a Policy Engine announcing a new version of a policy is the
    # cause the correlation engine looks for behind a compliance cascade.
    asset_kind: Literal["model", "prompt", "application", "policy"] = Field(
        description="What kind of asset ``asset_id`` names."
    )
    name: ShortText = Field(description="Display name of the asset.")
    version: ShortText = Field("1", description="Version label of the asset.")
    provider: ShortText | None = Field(None, description="For models: the provider.")
    model: ShortText | None = Field(None, description="For models and applications: the model.")
    owner: ShortText | None = Field(None, description="Owning team or person.")
    lifecycle_status: Literal["active", "deprecated", "retired"] = Field(
        "active", description="Lifecycle state after the change."
    )


class Envelope(BaseModel):
    """Fields every event on every topic carries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str = Field(
        pattern=UUID_PATTERN,
        json_schema_extra={"format": "uuid"},
        description="Unique id of the event (UUID); redeliveries share it.",
    )
    event_type: str
    source_module: ShortText = Field(
        description="observatory, sentinel, costops, policy_engine or registry."
    )
    occurred_at: Timestamp
    tenant_id: Identifier = Field(description="The organisation the event belongs to.")
    asset_id: Identifier = Field(
        description="The application, model or prompt (Registry id) the event is about."
    )
    severity: Annotated[Severity, BeforeValidator(_lower)] = Field(
        Severity.info, description="info, low, medium, high or critical."
    )
    schema_version: str = Field(
        SCHEMA_VERSION,
        pattern=r"^1\.\d+$",
        description="Contract version, major.minor; only major version 1 is accepted.",
    )


class TelemetryEvent(Envelope):
    """``llm.telemetry``: one event per LLM request."""

    event_type: Literal["llm_request"] = "llm_request"
    body: TelemetryBody


class SecurityEvent(Envelope):
    """``llm.security``: a Sentinel threat alert."""

    event_type: Literal["threat_detected"] = "threat_detected"
    body: SecurityBody


class CostEvent(Envelope):
    """``llm.cost``: a CostOps billing record."""

    event_type: Literal["billing_record"] = "billing_record"
    body: CostBody


class GovernanceEvent(Envelope):
    """``llm.governance``: a Policy Engine violation."""

    event_type: Literal["policy_violation"] = "policy_violation"
    body: GovernanceBody


class RegistryEvent(Envelope):
    """``llm.registry``: a model, prompt, application or policy registered or updated."""

    event_type: Literal["asset_registered", "asset_updated"]
    body: RegistryBody


EVENT_MODELS: dict[str, type[Envelope]] = {
    "telemetry": TelemetryEvent,
    "security": SecurityEvent,
    "cost": CostEvent,
    "governance": GovernanceEvent,
    "registry": RegistryEvent,
}
