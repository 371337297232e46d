"""Ingestion: OTLP/HTTP traces and metrics, and contract events (JSON array or NDJSON)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from psycopg.types.json import Jsonb

from llmhub.api import otlp
from llmhub.api.auth import Principal
from llmhub.api.deps import Services, require, services
from llmhub.api.kafka import Overloaded
from llmhub.api.problems import Problem, retry_after
from llmhub.contract.models import EVENT_MODELS
from llmhub.contract.topics import BY_FAMILY, BY_TOPIC
from llmhub.ingest.normalize import Rejection
from llmhub.producers.sink import DeliveryError, Message

log = logging.getLogger(__name__)
router = APIRouter()
Ingestor = Annotated[Principal, Depends(require("ingest", "editor"))]
_FAMILY_OF_TYPE = {
    event_type: family
    for family, model in EVENT_MODELS.items()
    for event_type in model.model_fields["event_type"].annotation.__args__  # type: ignore[union-attr]
}
_REASONS_IN_MESSAGE = 5


@asynccontextmanager
async def _admitted(svc: Services) -> AsyncIterator[None]:
    """Refuse with 503 + Retry-After past the in-flight limit (the broker is behind)."""
    if svc.inflight >= svc.api.max_inflight_ingest:
        raise Problem(503, "overloaded", "too many ingest requests in flight", retry_after(1))
    svc.inflight += 1
    try:
        yield
    finally:
        svc.inflight -= 1


async def _body(request: Request, svc: Services) -> bytes:
    length = int(request.headers.get("content-length") or 0)
    if length > svc.api.max_body_bytes:
        raise Problem(413, "payload-too-large", f"body over {svc.api.max_body_bytes} bytes")
    raw = await request.body()
    try:
        return otlp.decompress(raw, request.headers.get("content-encoding"), svc.api.max_body_bytes)
    except otlp.PayloadError as exc:
        raise Problem(400, "invalid-payload", str(exc)) from None


async def _send(svc: Services, messages: list[Message]) -> None:
    await _deliver(svc.sender.send(messages))


async def _send_values(svc: Services, topic: str, values: list[bytes]) -> None:
    await _deliver(svc.sender.send_values(topic, values))


async def _deliver(sending: Awaitable[None]) -> None:
    try:
        await sending
    except Overloaded as exc:
        raise Problem(503, "overloaded", str(exc), retry_after(1)) from None
    except DeliveryError as exc:
        log.warning("broker did not acknowledge: %s", exc)
        raise Problem(
            503, "broker-unavailable", "the broker did not acknowledge", retry_after(5)
        ) from None


def _otlp_response(message: Any, json: bool) -> Response:
    if json:
        return Response(json_format.MessageToJson(message), media_type="application/json")
    return Response(message.SerializeToString(), media_type="application/x-protobuf")


@router.post("/v1/traces", tags=["ingest"], summary="OTLP/HTTP traces (protobuf or JSON)")
async def otlp_traces(request: Request, principal: Ingestor) -> Response:
    """GenAI spans become ``llm.telemetry`` events; answered after the broker acknowledged.

    Non-GenAI spans are counted and ignored; spans the contract rejects are reported in
    ``partial_success`` with the contract's reason.
    """
    svc = services(request)
    try:
        as_json = otlp.is_json(request.headers.get("content-type"))
    except otlp.PayloadError as exc:
        raise Problem(415, "unsupported-media-type", str(exc)) from None
    async with _admitted(svc):
        body = await _body(request, svc)
        try:
            if as_json:
                spans = otlp.decode_spans(body, True)
                candidates = [
                    (s.span_id, otlp.span_event(s, principal.tenant_id))
                    for s in spans
                    if otlp.is_llm_request(s.attributes)
                ]
                ignored = len(spans) - len(candidates)
            else:
                candidates, ignored = otlp.pb_span_events(body, principal.tenant_id)
        except otlp.PayloadError as exc:
            raise Problem(400, "invalid-payload", str(exc)) from None
        normalizer = svc.normalizers["telemetry"]
        topic = svc.settings.topic(normalizer.spec.topic)
        now = datetime.now(UTC)
        values: list[bytes] = []
        reasons: list[str] = []
        normalize = normalizer.normalize
        dumps = orjson.dumps
        for span_id, event in candidates:
            value = dumps(event)
            verdict = normalize(value, -1, -1, now)
            if type(verdict) is Rejection:
                reasons.append(f"span {span_id.hex()}: {verdict.error_class}: {verdict.error}")
            else:
                values.append(value)
        # One quota round trip per request: the rate bucket is charged for every GenAI span,
        # the monthly count for the accepted ones.
        await svc.quotas.admit_ingest(principal.tenant_id, len(candidates), len(values))
        await _send_values(svc, topic, values)
    request.state.accepted = len(values)
    response = ExportTraceServiceResponse()
    notes = []
    if reasons:
        response.partial_success.rejected_spans = len(reasons)
        notes.append(f"{len(reasons)} GenAI spans rejected: " + "; ".join(reasons[:5]))
    if ignored:
        notes.append(f"{ignored} non-GenAI spans ignored")
    if notes:
        response.partial_success.error_message = " | ".join(notes)
    return _otlp_response(response, as_json)


@router.post("/v1/metrics", tags=["ingest"], summary="OTLP/HTTP GenAI client metrics")
async def otlp_metrics(request: Request, principal: Ingestor) -> Response:
    """GenAI metric points (token usage, durations, time to first token) are stored per tenant
    in ``api.genai_metric_points`` under their current names; other metrics are ignored."""
    svc = services(request)
    try:
        as_json = otlp.is_json(request.headers.get("content-type"))
    except otlp.PayloadError as exc:
        raise Problem(415, "unsupported-media-type", str(exc)) from None
    async with _admitted(svc):
        body = await _body(request, svc)
        try:
            points, ignored = otlp.decode_metrics(body, as_json)
        except otlp.PayloadError as exc:
            raise Problem(400, "invalid-payload", str(exc)) from None
        await svc.quotas.admit_ingest(principal.tenant_id, len(points), 0)
        if points:
            rows = [
                (
                    principal.tenant_id,
                    p.metric,
                    p.unit,
                    _ns_to_dt(p.start_ns),
                    _ns_to_dt(p.time_ns) or datetime.now(UTC),
                    Jsonb(p.attributes),
                    p.count,
                    p.sum,
                    p.bucket_counts,
                    p.explicit_bounds,
                )
                for p in points
            ]
            async with svc.pool.connection() as conn, conn.transaction():
                await conn.execute(
                    "select set_config('llmhub.tenant_id', %s, true)", (principal.tenant_id,)
                )
                async with conn.cursor() as cur:
                    await cur.executemany(
                        "insert into api.genai_metric_points (tenant_id, metric, unit, start_at, "
                        "observed_at, attributes, point_count, point_sum, bucket_counts, "
                        "explicit_bounds) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        rows,
                    )
    request.state.accepted = len(points)
    response = ExportMetricsServiceResponse()
    if ignored:
        response.partial_success.error_message = f"{ignored} non-GenAI data points ignored"
    return _otlp_response(response, as_json)


def _ns_to_dt(ns: int) -> datetime | None:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC) if ns else None


def _split_events(body: bytes) -> list[bytes]:
    """A JSON array's elements (re-serialised), or NDJSON lines byte for byte as
    ``produce_file`` splits them (empty lines kept, the one after a final newline dropped)."""
    if body.lstrip()[:1] == b"[":
        try:
            items = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise Problem(400, "invalid-payload", f"invalid JSON array: {exc}") from None
        return [orjson.dumps(item) for item in items]
    lines = body.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


@router.post("/api/v1/events", tags=["ingest"], summary="Contract events (JSON array or NDJSON)")
async def post_events(
    request: Request,
    principal: Ingestor,
    topic: Annotated[
        str | None,
        Query(description="Contract topic (llm.telemetry, ...); default: from each event_type"),
    ] = None,
) -> dict[str, Any]:
    """Each event is validated by the contract exactly as ingestion would; accepted events go to
    Kafka as ``llmhub produce file`` sends them (value byte for byte, no key, no timestamp).
    Events of another tenant than the caller's are rejected."""
    svc = services(request)
    if topic is not None and topic not in BY_TOPIC:
        raise Problem(400, "unknown-topic", f"unknown topic {topic!r}; one of {list(BY_TOPIC)}")
    async with _admitted(svc):
        values = _split_events(await _body(request, svc))
        now = datetime.now(UTC)
        results: list[dict[str, Any]] = []
        messages: list[Message] = []
        for index, value in enumerate(values):
            result, message = _judge(svc, principal, topic, index, value, now)
            results.append(result)
            if message is not None:
                messages.append(message)
        await svc.quotas.admit_ingest(principal.tenant_id, len(values), len(messages))
        await _send(svc, messages)
    request.state.accepted = len(messages)
    return {"accepted": len(messages), "rejected": len(values) - len(messages), "results": results}


def _judge(
    svc: Services, principal: Principal, topic: str | None, index: int, value: bytes, now: datetime
) -> tuple[dict[str, Any], Message | None]:
    try:
        parsed = orjson.loads(value) if value else None
    except orjson.JSONDecodeError:
        parsed = None
    family = BY_TOPIC[topic].family if topic else None
    if family is None:
        event_type = parsed.get("event_type") if isinstance(parsed, dict) else None
        family = _FAMILY_OF_TYPE.get(event_type, "telemetry")
    normalizer = svc.normalizers[family]
    verdict = normalizer.normalize(value, -1, -1, now)
    if isinstance(verdict, Rejection):
        return {
            "index": index,
            "status": "rejected",
            "error_class": str(verdict.error_class),
            "error": verdict.error,
        }, None
    assert isinstance(parsed, dict)
    if parsed.get("tenant_id") != principal.tenant_id:
        return {
            "index": index,
            "status": "rejected",
            "error_class": "forbidden_tenant",
            "error": "tenant_id is not the caller's tenant",
        }, None
    physical = svc.settings.topic(BY_FAMILY[family].topic)
    return {"index": index, "status": "accepted", "event_id": parsed.get("event_id")}, Message(
        physical, None, value
    )
