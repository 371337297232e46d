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
