"""OTLP payloads to contract events: attribute generations, encodings, what is ignored."""

from __future__ import annotations

import gzip
import time
from typing import Any

import orjson
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from llmhub.api import otlp
from llmhub.config import Settings
from llmhub.contract.topics import BY_FAMILY
from llmhub.ingest.normalize import Normalizer, Rejection

NOW_NS = time.time_ns()


def _kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, bool):
        v = AnyValue(bool_value=value)
    elif isinstance(value, int):
        v = AnyValue(int_value=value)
    elif isinstance(value, float):
        v = AnyValue(double_value=value)
    else:
        v = AnyValue(string_value=value)
    return KeyValue(key=key, value=v)


def _request(spans: list[dict[str, Any]], service: str = "chat-app") -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.append(_kv("service.name", service))
    ss = rs.scope_spans.add()
    for i, spec in enumerate(spans):
        span = ss.spans.add()
        span.trace_id = bytes([i + 1]) * 16
        span.span_id = bytes([i + 1]) * 8
        span.name = "chat"
        span.start_time_unix_nano = NOW_NS - 2_000_000_000
        span.end_time_unix_nano = NOW_NS - 2_000_000_000 + spec.pop("_duration_ns", 250_000_000)
        if spec.pop("_error", False):
            span.status.code = 2
            span.status.message = "boom"
        for key, value in spec.items():
            span.attributes.append(_kv(key, value))
    return req.SerializeToString()


OLD = {
    "gen_ai.system": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.usage.prompt_tokens": 11,
    "gen_ai.usage.completion_tokens": 7,
    "gen_ai.usage.cache_read_input_tokens": 3,
    "gen_ai.usage.cache_creation_input_tokens": 2,
}
MIDDLE = {
    "gen_ai.operation.name": "chat",
    "gen_ai.system": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.usage.input_tokens": 11,
    "gen_ai.usage.output_tokens": 7,
    "gen_ai.usage.input_tokens.cached": 3,
    "gen_ai.usage.input_tokens.cache_write": 2,
}
NEW = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.usage.input_tokens": 11,
    "gen_ai.usage.output_tokens": 7,
    "gen_ai.usage.cache_read.input_tokens": 3,
    "gen_ai.usage.cache_creation.input_tokens": 2,
}


def _rows(body: bytes, json: bool = False) -> list[tuple[Any, ...] | Rejection]:
    normalizer = Normalizer(BY_FAMILY["telemetry"], Settings())
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return [
        normalizer.normalize(orjson.dumps(otlp.span_event(s, "acme")), -1, -1, now)
        for s in otlp.decode_spans(body, json)
        if otlp.is_llm_request(s.attributes)
    ]


@pytest.mark.parametrize("attributes", [OLD, MIDDLE, NEW], ids=["old", "middle", "new"])
def test_three_generations_of_names_give_one_event(attributes: dict[str, Any]) -> None:
    spans = otlp.decode_spans(_request([dict(attributes)]), json=False)
    event = otlp.span_event(spans[0], "acme")
    body = event["body"]
    assert body["gen_ai.provider.name"] == "openai"
    assert body["gen_ai.usage.input_tokens"] == 11
    assert body["gen_ai.usage.output_tokens"] == 7
    assert body["gen_ai.usage.cache_read.input_tokens"] == 3
    assert body["gen_ai.usage.cache_creation.input_tokens"] == 2
    assert not {"gen_ai.system", "gen_ai.usage.prompt_tokens"} & body.keys()
    assert body["latency_ms"] == pytest.approx(250.0)
    assert event["tenant_id"] == "acme" and event["asset_id"] == "chat-app"
    (row,) = _rows(_request([dict(attributes)]))
    assert not isinstance(row, Rejection), row


def test_non_genai_and_agent_spans_are_not_requests() -> None:
    body = _request(
        [{"http.request.method": "GET"}, {"gen_ai.operation.name": "execute_tool"}, dict(NEW)]
    )
    spans = otlp.decode_spans(body, json=False)
    assert [otlp.is_llm_request(s.attributes) for s in spans] == [False, False, True]


def test_contract_rejects_span_without_model_with_its_reason() -> None:
    (row,) = _rows(_request([{"gen_ai.operation.name": "chat", "gen_ai.provider.name": "x"}]))
    assert isinstance(row, Rejection)
    assert row.error == "body.gen_ai.request.model: Field required"


def test_error_status_and_429_map_to_contract_status() -> None:
    spans = otlp.decode_spans(
        _request([{**NEW, "_error": True}, {**NEW, "http.response.status_code": 429}]), False
    )
    assert otlp.span_event(spans[0], "t")["body"]["error.type"] == "boom"
    assert otlp.span_event(spans[1], "t")["body"]["http.response.status_code"] == 429


def test_json_encoding_gives_the_same_events_as_protobuf() -> None:
    from google.protobuf import json_format

    pb = _request([dict(OLD), dict(NEW), {"db.system": "postgresql"}])
    message = ExportTraceServiceRequest()
    message.ParseFromString(pb)
    as_json = orjson.loads(json_format.MessageToJson(message))
    # OTLP/JSON carries ids as hex, not protobuf-JSON's base64.
    for rs in as_json["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                import base64

                span["traceId"] = base64.b64decode(span["traceId"]).hex()
                span["spanId"] = base64.b64decode(span["spanId"]).hex()
    from_pb = [otlp.span_event(s, "t") for s in otlp.decode_spans(pb, False)]
    from_json = [otlp.span_event(s, "t") for s in otlp.decode_spans(orjson.dumps(as_json), True)]
    assert from_pb == from_json


def test_event_id_is_stable_per_span() -> None:
    # A re-exported span (exporter retry) must keep its id so ingestion deduplicates it.
    a = otlp.event_id(b"\x01" * 16, b"\x02" * 8)
    assert a == otlp.event_id(b"\x01" * 16, b"\x02" * 8)
    assert a != otlp.event_id(b"\x01" * 16, b"\x03" * 8)


def test_gzip_and_limits() -> None:
    raw = _request([dict(NEW)])
    assert otlp.decompress(gzip.compress(raw), "gzip", 1 << 20) == raw
    with pytest.raises(otlp.PayloadError):
        otlp.decompress(gzip.compress(b"x" * 5000), "gzip", 1000)
    with pytest.raises(otlp.PayloadError):
        otlp.decompress(b"not gzip", "gzip", 1000)
    with pytest.raises(otlp.PayloadError):
        otlp.decode_spans(b"\xff\xff\xff", json=False)
    with pytest.raises(otlp.PayloadError):
        otlp.is_json("text/plain")


def test_genai_metrics_are_renamed_and_others_ignored() -> None:
    req = ExportMetricsServiceRequest()
    sm = req.resource_metrics.add().scope_metrics.add()
    for name in ("gen_ai.client.request.duration", "gen_ai.client.token.usage", "http.duration"):
        metric = sm.metrics.add()
        metric.name = name
        metric.unit = "s"
        point = metric.histogram.data_points.add()
        point.time_unix_nano = NOW_NS
        point.count = 2
        point.sum = 1.5
        point.bucket_counts.extend([1, 1])
        point.explicit_bounds.append(1.0)
        point.attributes.append(_kv("gen_ai.token.type", "prompt"))
        point.attributes.append(_kv("gen_ai.system", "openai"))
    points, ignored = otlp.decode_metrics(req.SerializeToString(), json=False)
    assert ignored == 1
    assert [p.metric for p in points] == [
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage",
    ]
    assert points[1].attributes["gen_ai.token.type"] == "input"
    assert points[1].attributes["gen_ai.provider.name"] == "openai"
    assert points[0].bucket_counts == [1, 1] and points[0].count == 2


def _reference_event_id(trace_id: bytes, span_id: bytes) -> str:
    import hashlib

    digest = bytearray(hashlib.blake2b(trace_id + span_id, digest_size=16).digest())
    digest[6] = (digest[6] & 0x0F) | 0x80
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@pytest.mark.parametrize("seed", range(50))
def test_event_id_is_unchanged_by_the_hex_rewrite(seed: int) -> None:
    # The id is written from the hex digest now: a span exported before and after the rewrite
    # must keep its id, or ingestion would store it twice.
    import random
    import uuid

    rng = random.Random(seed)
    trace_id, span_id = rng.randbytes(16), rng.randbytes(8)
    value = otlp.event_id(trace_id, span_id)
    assert value == _reference_event_id(trace_id, span_id)
    assert uuid.UUID(value).version == 8 and uuid.UUID(value).variant == uuid.RFC_4122


@pytest.mark.parametrize(
    "ns",
    [0, 1, 999, 1_000, NOW_NS, NOW_NS - NOW_NS % 1_000_000_000, 1_764_450_000_123_456_789],
)
def test_iso_utc_writes_what_datetime_writes(ns: int) -> None:
    from datetime import UTC, datetime, timedelta

    expected = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)
    assert otlp.iso_utc(ns) == expected.isoformat()


def _varied_request() -> bytes:
    """Spans of every shape the one-pass path branches on."""
    req = ExportTraceServiceRequest()
    for service, asset in (("svc-a", None), ("", "asset-from-resource")):
        rs = req.resource_spans.add()
        if service:
            rs.resource.attributes.append(_kv("service.name", service))
        if asset:
            rs.resource.attributes.append(_kv("llmhub.asset_id", asset))
        ss = rs.scope_spans.add()
        specs: list[dict[str, Any] | list[tuple[str, Any]]] = [
            dict(OLD),
            dict(NEW),
            {**OLD, **NEW},  # both generations: the newest name wins
            {"db.system": "postgresql"},  # not GenAI
            {"gen_ai.operation.name": "execute_tool", "gen_ai.provider.name": "openai"},
            {**NEW, "gen_ai.prompt.0.content": "secret", "gen_ai.input.messages": "[...]"},
            {**NEW, "llmhub.asset_id": "asset-on-span", "service.name": "svc-on-span"},
            {**NEW, "service.name": "svc-on-span"},
            {**NEW, "_error": True},
            {**NEW, "error.type": "429", "http.response.status_code": 429, "_error": True},
            {**NEW, "gen_ai.request.temperature": 0.2, "gen_ai.request.stream": True},
            {
                **OLD,
                "gen_ai.usage.cache_read_input_tokens": 3,
                "gen_ai.usage.input_tokens.cached": 4,
            },
            {**NEW, "gen_ai.response.time_to_first_chunk": 0.1, "_duration_ns": 0},
            # A key repeated: the last value counts, as in a dict.
            [*NEW.items(), ("gen_ai.system", "first"), ("gen_ai.system", "second")],
            [
                ("gen_ai.system", "x"),
                ("gen_ai.usage.prompt_tokens", 1),
                ("gen_ai.usage.prompt_tokens", 2),
            ],
        ]
        for i, spec in enumerate(specs):
            items = list(spec.items()) if isinstance(spec, dict) else list(spec)
            span = ss.spans.add()
            span.trace_id = bytes([i + 1, len(service)]) * 8
            span.span_id = bytes([i + 7]) * 8
            start = NOW_NS - 2_000_000_000 + i * 1_234_567
            span.start_time_unix_nano = start
            duration = dict(items).get("_duration_ns", 250_000_000)
            span.end_time_unix_nano = start + duration if duration else 0
            if dict(items).get("_error"):
                span.status.code = 2
                span.status.message = "boom"
            for key, value in items:
                if not key.startswith("_"):
                    span.attributes.append(_kv(key, value))
    return req.SerializeToString()


def test_one_pass_protobuf_path_equals_decode_then_map() -> None:
    body = _varied_request()
    spans = otlp.decode_spans(body, False)
    expected = [
        (s.span_id, otlp.span_event(s, "t")) for s in spans if otlp.is_llm_request(s.attributes)
    ]
    events, ignored = otlp.pb_span_events(body, "t")
    assert events == expected
    assert ignored == len(spans) - len(expected) == 4
    # Key order too: the event bytes sent to Kafka are the same.
    assert [orjson.dumps(e) for _, e in events] == [orjson.dumps(e) for _, e in expected]


def test_one_pass_protobuf_path_refuses_what_is_not_otlp() -> None:
    with pytest.raises(otlp.PayloadError):
        otlp.pb_span_events(b"\xff\xff\xff not protobuf", "t")
