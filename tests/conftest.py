"""Fixtures shared by unit and integration tests: contract-valid events of every family."""

from __future__ import annotations

import copy
import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from llmhub.contract.topics import BY_FAMILY

EventFactory = Callable[..., dict[str, Any]]


@pytest.fixture(autouse=True, scope="session")
def _metrics_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Ingestion runs in tests write their Prometheus textfile here, not into the stack's."""
    os.environ["LLMHUB_METRICS_DIR"] = str(tmp_path_factory.mktemp("metrics"))


_BODIES: dict[str, tuple[str, dict[str, Any]]] = {
    "telemetry": (
        "llm_request",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.usage.input_tokens": 120,
            "gen_ai.usage.output_tokens": 45,
            "gen_ai.response.finish_reasons": ["stop"],
            "latency_ms": 812.5,
            "time_to_first_token_ms": 140.0,
            "cost_usd": 0.00123,
            "user.id": "user-1",
        },
    ),
    "security": (
        "threat_detected",
        {
            "alert_type": "prompt_injection",
            "detector": "heuristic-v2",
            "action_taken": "blocked",
            "confidence": 0.93,
            "request_id": "req-1",
            "description": "ignore previous instructions",
        },
    ),
    "cost": (
        "billing_record",
        {
            "provider": "anthropic",
            "model": "claude-sonnet-4",
            "input_tokens": 1000,
            "output_tokens": 200,
            "request_count": 7,
            "cost_usd": 12.5,
            "billing_period_start": "2026-01-01",
            "billing_period_end": "2026-01-01",
            "invoice_id": "inv-1",
        },
    ),
    "governance": (
        "policy_violation",
        {
            "policy_id": "pol-1",
            "policy_name": "No PII in prompts",
            "violation_type": "pii_in_prompt",
            "action_taken": "redacted",
            "request_id": "req-1",
        },
    ),
    "registry": (
        "asset_registered",
        {
            "asset_kind": "model",
            "name": "gpt-4o",
            "version": "2024-08-06",
            "provider": "openai",
            "owner": "platform-team",
        },
    ),
}


def _iso_z(moment: datetime) -> str:
    """``moment`` as ISO-8601 in UTC with a ``Z`` suffix."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def make_event(family: str, *, body: dict[str, Any] | None = None, **envelope: Any) -> dict:
    """A contract-valid event of ``family`` one minute old; ``body`` keys and envelope fields
    override the defaults (a ``None`` body value removes that key)."""
    event_type, default_body = _BODIES[family]
    merged = copy.deepcopy(default_body)
    for key, value in (body or {}).items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    event: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "source_module": BY_FAMILY[family].source_module,
        "occurred_at": _iso_z(datetime.now(UTC) - timedelta(minutes=1)),
        "tenant_id": "tenant-a",
        "asset_id": "app-chat",
        "severity": "info",
        "schema_version": "1.0",
        "body": merged,
    }
    event.update(envelope)
    return event


@pytest.fixture
def event() -> EventFactory:
    """``event(family, body={...}, **envelope)``: a fresh contract-valid event dict."""
    return make_event
