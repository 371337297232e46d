"""OTLP/HTTP payloads (protobuf or JSON) to contract telemetry events; GenAI metrics to points.

Pure functions: no I/O. A span is an LLM request when it carries GenAI attributes
(``gen_ai.operation.name``, ``gen_ai.provider.name`` or the older ``gen_ai.system``) and its
operation is a model call (agent and tool spans are counted as ignored, like non-GenAI ones).

Three generations of GenAI attribute names are folded into the newest one before the event is
built, so the raw table's ``attributes`` column never holds two names for one quantity:
``gen_ai.system`` -> ``gen_ai.provider.name``; ``gen_ai.usage.prompt_tokens`` /
``completion_tokens`` -> ``input_tokens`` / ``output_tokens``; the cache counters
(``cache_read_input_tokens``, ``input_tokens.cached`` -> ``cache_read.input_tokens``;
``cache_creation_input_tokens``, ``input_tokens.cache_write`` -> ``cache_creation.input_tokens``).
Message content attributes (prompts, completions) are dropped: the hub keeps no content.
"""

from __future__ import annotations

import base64
import hashlib
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

GENAI_MARKERS = ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.system")
# GenAI operations that are not a call to a model.
NON_REQUEST_OPERATIONS = frozenset({"execute_tool", "invoke_agent", "create_agent"})
SYNONYMS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("gen_ai.provider.name", ("gen_ai.system",)),
    ("gen_ai.usage.input_tokens", ("gen_ai.usage.prompt_tokens",)),
    ("gen_ai.usage.output_tokens", ("gen_ai.usage.completion_tokens",)),
    (
        "gen_ai.usage.cache_read.input_tokens",
        ("gen_ai.usage.cache_read_input_tokens", "gen_ai.usage.input_tokens.cached"),
    ),
    (
        "gen_ai.usage.cache_creation.input_tokens",
        ("gen_ai.usage.cache_creation_input_tokens", "gen_ai.usage.input_tokens.cache_write"),
    ),
    (
        "gen_ai.server.time_to_first_token",
        ("gen_ai.response.time_to_first_chunk", "gen_ai.client.operation.time_to_first_chunk"),
    ),
)
_CANONICAL = {name: canonical for canonical, names in SYNONYMS for name in names}
_RANK = {name: rank for rank, name in enumerate(_CANONICAL)}
CONTENT_PREFIXES = (
    "gen_ai.prompt",
    "gen_ai.completion",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.definitions",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
)
KEPT_ATTRIBUTES = frozenset(
    {"error.type", "http.response.status_code", "user.id", "server.address", "server.port"}
)
ASSET_ATTRIBUTES = ("llmhub.asset_id", "service.name")
STATUS_ERROR = 2

# Metric renames across semantic-convention versions -> the name points are stored under.
METRIC_NAMES = {
    "gen_ai.client.token.usage": "gen_ai.client.token.usage",
    "gen_ai.client.operation.duration": "gen_ai.client.operation.duration",
    "gen_ai.client.request.duration": "gen_ai.client.operation.duration",
    "gen_ai.server.request.duration": "gen_ai.server.request.duration",
    "gen_ai.server.time_to_first_token": "gen_ai.server.time_to_first_token",
    "gen_ai.client.operation.time_to_first_chunk": "gen_ai.server.time_to_first_token",
    "gen_ai.server.time_per_output_token": "gen_ai.server.time_per_output_token",
    "gen_ai.client.operation.time_per_output_chunk": "gen_ai.server.time_per_output_token",
}
TOKEN_TYPES = {"prompt": "input", "completion": "output", "input": "input", "output": "output"}


class PayloadError(ValueError):
    """The body is not a decodable OTLP request."""


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo ``Content-Encoding`` (gzip, deflate or none) without inflating past ``limit``."""
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate", "x-gzip"):
        raise PayloadError(f"unsupported Content-Encoding {encoding!r}")
    wbits = 16 + zlib.MAX_WBITS if encoding != "deflate" else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise PayloadError(f"body is not valid {encoding}: {exc}") from None
    if len(out) > limit:
        raise PayloadError(f"decompressed body exceeds {limit} bytes")
    return out


def is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";")[0].strip().lower()
    if media == "application/json":
        return True
    if media in ("application/x-protobuf", "application/protobuf", ""):
        return False
    raise PayloadError(f"unsupported Content-Type {media!r} (application/x-protobuf or json)")


@dataclass(frozen=True, slots=True)
class SpanView:
    """The fields of one span the mapping needs, from either encoding."""

    trace_id: bytes
    span_id: bytes
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str
    attributes: dict[str, Any]
    resource: dict[str, Any]


# --- protobuf -------------------------------------------------------------------------------


def _pb_value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return v.string_value
    if kind == "int_value":
        return v.int_value
    if kind is None:
        return None
    if kind == "array_value":
        return [_pb_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _pb_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind)


def _pb_attrs(kvs: Any) -> dict[str, Any]:
    # The hot loop of OTLP ingestion (one call per span): strings and ints, by far the most
    # common kinds, are read without a second lookup.
    out: dict[str, Any] = {}
    for kv in kvs:
        v = kv.value
        kind = v.WhichOneof("value")
        if kind == "string_value":
            out[kv.key] = v.string_value
        elif kind == "int_value":
            out[kv.key] = v.int_value
        else:
            out[kv.key] = _pb_value(v)
    return out


def _pb_spans(body: bytes) -> Iterator[SpanView]:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise PayloadError(f"not an OTLP ExportTraceServiceRequest: {exc}") from None
    for rs in request.resource_spans:
        resource = _pb_attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            for span in ss.spans:
                yield SpanView(
                    span.trace_id,
                    span.span_id,
                    span.start_time_unix_nano,
                    span.end_time_unix_nano,
                    span.status.code,
                    span.status.message,
                    _pb_attrs(span.attributes),
                    resource,
                )


# --- JSON (OTLP/JSON: lowerCamelCase keys, hex ids, int64 as strings) -----------------------

_JSON_STATUS = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}


def _json_value(v: dict[str, Any]) -> Any:
    if not isinstance(v, dict) or not v:
        return None
    kind, value = next(iter(v.items()))
    if kind == "intValue":
        return int(value)
    if kind == "doubleValue":
        return float(value)
    if kind == "arrayValue":
        return [_json_value(x) for x in (value or {}).get("values", [])]
    if kind == "kvlistValue":
        return {kv["key"]: _json_value(kv.get("value")) for kv in (value or {}).get("values", [])}
    if kind == "bytesValue":
        return base64.b64decode(value).hex()
    return value


def _json_attrs(kvs: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {kv["key"]: _json_value(kv.get("value", {})) for kv in kvs or ()}


def _json_status(status: dict[str, Any] | None) -> tuple[int, str]:
    status = status or {}
    code = status.get("code", 0)
    if isinstance(code, str):
        code = _JSON_STATUS.get(code, 0)
    return int(code), str(status.get("message", ""))


def _json_spans(body: bytes) -> Iterator[SpanView]:
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"invalid JSON: {exc}") from None
    if not isinstance(request, dict):
        raise PayloadError("OTLP/JSON body must be an object with resourceSpans")
    try:
        for rs in request.get("resourceSpans") or ():
            resource = _json_attrs((rs.get("resource") or {}).get("attributes"))
            for ss in rs.get("scopeSpans") or ():
                for span in ss.get("spans") or ():
                    code, message = _json_status(span.get("status"))
                    yield SpanView(
                        bytes.fromhex(span.get("traceId", "")),
                        bytes.fromhex(span.get("spanId", "")),
                        int(span.get("startTimeUnixNano", 0)),
                        int(span.get("endTimeUnixNano", 0)),
                        code,
                        message,
                        _json_attrs(span.get("attributes")),
                        resource,
                    )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise PayloadError(f"malformed OTLP/JSON spans: {exc!r}") from None


def decode_spans(body: bytes, json: bool) -> list[SpanView]:
    """Every span of an ExportTraceServiceRequest.

    Raises:
        PayloadError: the body is not one.
    """
    return list(_json_spans(body) if json else _pb_spans(body))


# --- spans -> events ------------------------------------------------------------------------


def is_llm_request(attributes: dict[str, Any]) -> bool:
    if not any(marker in attributes for marker in GENAI_MARKERS):
        return False
    return attributes.get("gen_ai.operation.name") not in NON_REQUEST_OPERATIONS


def fold_synonyms(attributes: dict[str, Any]) -> dict[str, Any]:
    """Keep the GenAI attributes under their newest names (the newest name present wins, then
    the older ones in ``SYNONYMS`` order)."""
    out: dict[str, Any] = {}
    older: list[tuple[int, str, Any]] = []
    for key, value in attributes.items():
        if key.startswith("gen_ai."):
            if key.startswith(CONTENT_PREFIXES):
                continue
            canonical = _CANONICAL.get(key)
            if canonical is not None:
                older.append((_RANK[key], canonical, value))
                continue
        elif key not in KEPT_ATTRIBUTES:
            continue
        out[key] = value
    for _, canonical, value in sorted(older, key=lambda item: item[0]) if older else ():
        out.setdefault(canonical, value)
    return out


def event_id(trace_id: bytes, span_id: bytes) -> str:
    """A UUID derived from the span's identity: a re-exported span keeps its event id.

    The BLAKE2b digest with the RFC 9562 version 8 nibble and the variant bits set, written
    from the hex digest directly (one call per span on the ingest path)."""
    h = hashlib.blake2b(trace_id + span_id, digest_size=16).hexdigest()
    return f"{h[:8]}-{h[8:12]}-8{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}
_SECOND_PREFIX: dict[int, str] = {}


def iso_utc(ns: int) -> str:
    """``ns`` since the epoch as ISO-8601 UTC with microseconds (truncated), as
    ``datetime.isoformat`` writes it; the second's text is cached (a batch's spans share few)."""
    seconds, rest = divmod(ns, 1_000_000_000)
    prefix = _SECOND_PREFIX.get(seconds)
    if prefix is None:
        if len(_SECOND_PREFIX) > 4096:
            _SECOND_PREFIX.clear()
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _SECOND_PREFIX[seconds] = prefix
    micros = rest // 1000
    return f"{prefix}.{micros:06d}+00:00" if micros else f"{prefix}+00:00"


def span_event(span: SpanView, tenant_id: str) -> dict[str, Any]:
    """The telemetry event of one LLM-request span (not validated here)."""
    body = fold_synonyms(span.attributes)
    if span.end_ns and span.start_ns and span.end_ns >= span.start_ns:
        body["latency_ms"] = (span.end_ns - span.start_ns) / 1e6
    if span.status_code == STATUS_ERROR and "error.type" not in body:
        body["error.type"] = (span.status_message or "error")[:256]
    asset = next(
        (
            str(source[name])
            for name in ASSET_ATTRIBUTES
            for source in (span.attributes, span.resource)
            if source.get(name)
        ),
        "unknown_service",
    )
    return {
        "event_id": event_id(span.trace_id, span.span_id),
        "event_type": "llm_request",
        "source_module": "observatory",
        "occurred_at": iso_utc(span.start_ns),
        "tenant_id": tenant_id,
        "asset_id": asset,
        "body": body,
    }


# --- the protobuf fast path: bytes -> events in one pass ---------------------------------------

_DROP, _KEEP, _ASSET = 0, 1, 2
# What the one-pass path does with each attribute key (memoised: exporters repeat their keys).
_KEY_ACTION: dict[str, int | tuple[int, str]] = {}


def _key_action(key: str) -> int | tuple[int, str]:
    if key in ASSET_ATTRIBUTES:
        action: int | tuple[int, str] = _ASSET
    elif key.startswith("gen_ai."):
        if key.startswith(CONTENT_PREFIXES):
            action = _DROP
        elif key in _CANONICAL:
            action = (_RANK[key], _CANONICAL[key])
        else:
            action = _KEEP
    else:
        action = _KEEP if key in KEPT_ATTRIBUTES else _DROP
    if len(_KEY_ACTION) < 10_000:
        _KEY_ACTION[key] = action
    return action


def pb_span_events(body: bytes, tenant_id: str) -> tuple[list[tuple[bytes, dict[str, Any]]], int]:
    """The events of the LLM-request spans of a protobuf ExportTraceServiceRequest, with each
    span's id, and how many spans were not LLM requests.

    Equal to ``span_event`` over ``decode_spans`` filtered by ``is_llm_request`` (tested), in
    one pass: attribute values the event drops (message content, other attributes) are never
    decoded. This is the hot loop of OTLP ingestion.

    Raises:
        PayloadError: the body is not an ExportTraceServiceRequest.
    """
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise PayloadError(f"not an OTLP ExportTraceServiceRequest: {exc}") from None
    events: list[tuple[bytes, dict[str, Any]]] = []
    ignored = 0
    actions = _KEY_ACTION
    for rs in request.resource_spans:
        resource = _pb_attrs(rs.resource.attributes)
        resource_asset = {k: resource[k] for k in ASSET_ATTRIBUTES if resource.get(k)}
        for ss in rs.scope_spans:
            for span in ss.spans:
                out: dict[str, Any] = {}
                older: dict[str, tuple[int, str, Any]] | None = None
                asset: dict[str, Any] | None = None
                marked = False
                for kv in span.attributes:
                    key = kv.key
                    action = actions.get(key)
                    if action is None:
                        action = _key_action(key)
                    if action == _DROP:
                        continue
                    v = kv.value
                    value = v.string_value or _pb_value(v)
                    if action == _KEEP:
                        out[key] = value
                        if key in GENAI_MARKERS:
                            marked = True
                    elif action == _ASSET:
                        if asset is None:
                            asset = {}
                        asset[key] = value
                    else:
                        if older is None:
                            older = {}
                        older[key] = (*action, value)  # type: ignore[misc]
                        if key in GENAI_MARKERS:
                            marked = True
                if not marked or out.get("gen_ai.operation.name") in NON_REQUEST_OPERATIONS:
                    ignored += 1
                    continue
                if older:
                    for _, canonical, value in sorted(older.values(), key=_first):
                        out.setdefault(canonical, value)
                start, end = span.start_time_unix_nano, span.end_time_unix_nano
                if end and start and end >= start:
                    out["latency_ms"] = (end - start) / 1e6
                if span.status.code == STATUS_ERROR and "error.type" not in out:
                    out["error.type"] = (span.status.message or "error")[:256]
                name = _asset(asset, resource_asset)
                events.append(
                    (
                        span.span_id,
                        {
                            "event_id": event_id(span.trace_id, span.span_id),
                            "event_type": "llm_request",
                            "source_module": "observatory",
                            "occurred_at": iso_utc(start),
                            "tenant_id": tenant_id,
                            "asset_id": name,
                            "body": out,
                        },
                    )
                )
    return events, ignored


def _first(item: tuple[int, str, Any]) -> int:
    return item[0]


def _asset(span_asset: dict[str, Any] | None, resource_asset: dict[str, Any]) -> str:
    for name in ASSET_ATTRIBUTES:
        if span_asset and span_asset.get(name):
            return str(span_asset[name])
        if name in resource_asset:
            return str(resource_asset[name])
    return "unknown_service"


# --- metrics --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One GenAI metric data point (a histogram or a sum/gauge value) under its current name."""

    metric: str
    unit: str
    start_ns: int
    time_ns: int
    attributes: dict[str, Any]
    count: int | None
    sum: float | None
    bucket_counts: list[int] | None
    explicit_bounds: list[float] | None


def _points_pb(metric: Any) -> Iterator[tuple[Any, str]]:
    kind = metric.WhichOneof("data")
    if kind in ("histogram", "sum", "gauge"):
        for point in getattr(metric, kind).data_points:
            yield point, kind


def decode_metrics(body: bytes, json: bool) -> tuple[list[MetricPoint], int]:
    """The GenAI points of an ExportMetricsServiceRequest, and how many other points it had."""
    if json:
        return _json_metrics(body)
    request = ExportMetricsServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise PayloadError(f"not an OTLP ExportMetricsServiceRequest: {exc}") from None
    points: list[MetricPoint] = []
    ignored = 0
    for rm in request.resource_metrics:
        resource = _pb_attrs(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                name = METRIC_NAMES.get(metric.name)
                for point, kind in _points_pb(metric):
                    if name is None:
                        ignored += 1
                        continue
                    attrs = {**resource, **_pb_attrs(point.attributes)}
                    if kind == "histogram":
                        points.append(
                            _point(
                                name,
                                metric.unit,
                                point.start_time_unix_nano,
                                point.time_unix_nano,
                                attrs,
                                point.count,
                                point.sum,
                                list(point.bucket_counts),
                                list(point.explicit_bounds),
                            )
                        )
                    else:
                        value = point.as_double if point.HasField("as_double") else point.as_int
                        points.append(
                            _point(
                                name,
                                metric.unit,
                                point.start_time_unix_nano,
                                point.time_unix_nano,
                                attrs,
                                None,
                                float(value),
                                None,
                                None,
                            )
                        )
    return points, ignored


def _json_metrics(body: bytes) -> tuple[list[MetricPoint], int]:
    try:
        request = orjson.loads(body)
        points: list[MetricPoint] = []
        ignored = 0
        for rm in request.get("resourceMetrics") or ():
            resource = _json_attrs((rm.get("resource") or {}).get("attributes"))
            for sm in rm.get("scopeMetrics") or ():
                for metric in sm.get("metrics") or ():
                    name = METRIC_NAMES.get(metric.get("name", ""))
                    for kind in ("histogram", "sum", "gauge"):
                        for p in (metric.get(kind) or {}).get("dataPoints") or ():
                            if name is None:
                                ignored += 1
                                continue
                            attrs = {**resource, **_json_attrs(p.get("attributes"))}
                            if kind == "histogram":
                                counts = [int(c) for c in p.get("bucketCounts", [])]
                                bounds = [float(b) for b in p.get("explicitBounds", [])]
                                count, total = int(p.get("count", 0)), p.get("sum")
                            else:
                                counts = bounds = None
                                count = None
                                total = p.get("asDouble", p.get("asInt"))
                            points.append(
                                _point(
                                    name,
                                    metric.get("unit", ""),
                                    int(p.get("startTimeUnixNano", 0)),
                                    int(p.get("timeUnixNano", 0)),
                                    attrs,
                                    count,
                                    float(total) if total is not None else None,
                                    counts,
                                    bounds,
                                )
                            )
        return points, ignored
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
        raise PayloadError(f"malformed OTLP/JSON metrics: {exc!r}") from None


def _point(
    name: str,
    unit: str,
    start_ns: int,
    time_ns: int,
    attrs: dict[str, Any],
    count: int | None,
    total: float | None,
    counts: list[int] | None,
    bounds: list[float] | None,
) -> MetricPoint:
    folded = fold_synonyms(attrs)
    token_type = folded.get("gen_ai.token.type")
    if token_type in TOKEN_TYPES:
        folded["gen_ai.token.type"] = TOKEN_TYPES[token_type]
    for name_attr in ASSET_ATTRIBUTES:
        if attrs.get(name_attr):
            folded.setdefault("llmhub.asset_id", str(attrs[name_attr]))
            break
    return MetricPoint(name, unit, start_ns, time_ns, folded, count, total, counts, bounds)
