"""The per-request model (tokens, latency, time to first token, cost), shared with the replays."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson

from llmhub.contract.models import SCHEMA_VERSION
from llmhub.producers.sink import Message
from llmhub.producers.synthetic.catalog import (
    _IS_EMBEDDING,
    _MS_PER_TOKEN,
    _PRICE_CACHE,
    _PRICE_IN,
    _PRICE_OUT,
    _SOURCE,
    _TOPIC,
    _TTFT_MS,
    ERROR_TYPES,
    FINISH_REASONS,
    MODEL_INDEX,
    MODELS,
)


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
    # Kept whole: the hot path described above (one pass, lists converted once).
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
