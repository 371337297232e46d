"""Replay public LLM serving traces as ``llm.telemetry`` events.

The traces give arrival times and token counts only. Everything else an event needs (provider,
model, latency, time to first token, cost) comes from the synthetic per-request model in
``llmhub.producers.synthetic``, and each event lists those fields in its body under
``llmhub.synthetic_fields`` so nobody mistakes them for measurements.

Supported traces (see ``../shared/data/README.md``):

- Azure LLM inference trace 2023 (Splitwise, ISCA'24, CC-BY-4.0):
  ``AzureLLMInferenceTrace_{code,conv}.csv`` with ``TIMESTAMP,ContextTokens,GeneratedTokens``.
- RAGPulse (MIT): ``data/0_trace.jsonl``, a week of a university RAG Q&A service.

Replayed events keep the trace's relative timing, shifted so the last request happens at ``end``
(default: now). With ``speedup`` the generator sleeps between events so they leave at that many
times real speed; the ``occurred_at`` stamps stay the shifted trace times either way.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from llmhub.producers.sink import Message
from llmhub.producers.synthetic.requests import (
    TelemetryBatch,
    encode_telemetry,
    model_index,
    request_cost,
    sample_timings,
    to_epoch_ms,
    uuid4_strings,
)

SYNTHETIC_FIELDS: tuple[str, ...] = (
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "latency_ms",
    "time_to_first_token_ms",
    "cost_usd",
)
"""Body fields a replayed event carries that the trace does not: drawn from the synthetic model."""

# Encoding the whole trace up front would delay the first paced event by the full encode time.
_ENCODE_BATCH = 5_000


@dataclass(frozen=True)
class TraceRequests:
    """A trace as columns, one entry per request in file order.

    ``offset_ms`` is the request time in milliseconds from an arbitrary trace origin; only
    differences matter. ``conversation_ids`` is None when the trace has no sessions.
    """

    offset_ms: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    conversation_ids: list[str] | None = None

    def __len__(self) -> int:
        return len(self.offset_ms)


def read_azure2023(path: Path) -> TraceRequests:
    """Read an Azure LLM inference 2023 CSV (``TIMESTAMP,ContextTokens,GeneratedTokens``).

    Timestamps such as ``2023-11-16 18:15:46.6805900`` carry no time zone; they are read as UTC
    (nothing but their differences is used) at microsecond resolution, dropping the seventh
    fractional digit.

    Args:
        path: ``AzureLLMInferenceTrace_code.csv`` or ``AzureLLMInferenceTrace_conv.csv``.

    Returns:
        The requests in file order, offsets in ms since the Unix epoch.
    """
    stamps: list[str] = []
    context: list[int] = []
    generated: list[int] = []
    with Path(path).open(newline="") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            stamps.append(row["TIMESTAMP"][:26])
            context.append(int(row["ContextTokens"]))
            generated.append(int(row["GeneratedTokens"]))
    offset_us = np.array(stamps, dtype="datetime64[us]").astype(np.int64)
    return TraceRequests(
        offset_ms=offset_us // 1000,
        input_tokens=np.array(context, dtype=np.int64),
        output_tokens=np.array(generated, dtype=np.int64),
    )


def read_ragpulse(path: Path) -> TraceRequests:
    """Read RAGPulse's ``0_trace.jsonl``.

    ``timestamp`` is seconds from 12:00 on the trace's first day, stored as a JSON string; the
    date itself is not published. The file is two time-sorted runs concatenated (rows 1-3,800
    and 3,801-7,106 each span the week), so file order steps back once; blank lines (the file
    ends with one) are skipped.

    Args:
        path: ``data/0_trace.jsonl``.

    Returns:
        The requests in file order, with ``session_id`` as the conversation id.
    """
    offsets: list[float] = []
    inputs: list[int] = []
    outputs: list[int] = []
    sessions: list[str] = []
    for line in Path(path).read_bytes().split(b"\n"):
        if not line.strip():
            continue
        record = orjson.loads(line)
        offsets.append(float(record["timestamp"]))
        inputs.append(int(record["input_length"]))
        outputs.append(int(record["output_length"]))
        sessions.append(str(record["session_id"]))
    return TraceRequests(
        offset_ms=np.rint(np.array(offsets) * 1000).astype(np.int64),
        input_tokens=np.array(inputs, dtype=np.int64),
        output_tokens=np.array(outputs, dtype=np.int64),
        conversation_ids=sessions,
    )


def replay_azure2023(
    path: Path,
    speedup: float | None = None,
    seed: int = 0,
    tenant_id: str = "tenant-azure-trace",
    service: str | None = None,
    end: datetime | None = None,
    model: str = "gpt-4o",
) -> Iterator[Message]:
    """Replay an Azure LLM inference 2023 trace as telemetry events, one per CSV row.

    The trace's timestamps have no zone and are treated as UTC; only their differences are
    kept. Rows are already in time order in both published files.

    Args:
        path: The CSV file.
        speedup: Send at this many times real speed (sleeping between events); None sends as
            fast as possible.
        seed: Seed of the synthetic fields and event ids.
        tenant_id: Tenant of every event.
        service: Application name; default from the file name (``code`` or ``conv``). The asset
            id is ``azure-llm-<service>``.
        end: Time of the last request; default now (UTC) when iteration starts.
        model: Model the synthetic fields are drawn for (the trace does not name one).

    Returns:
        An iterator of ``llm.telemetry`` messages keyed by tenant.
    """
    path = Path(path)
    name = service or path.stem.rsplit("_", 1)[-1].lower()
    trace = read_azure2023(path)
    return _replay(
        trace,
        speedup=speedup,
        seed=seed,
        tenant_id=tenant_id,
        asset_id=f"azure-llm-{name}",
        end=end,
        model=model,
        source=f"azure_llm_inference_2023/{name}",
    )


def replay_ragpulse(
    path: Path,
    speedup: float | None = None,
    seed: int = 0,
    tenant_id: str = "tenant-ragpulse",
    service: str | None = None,
    end: datetime | None = None,
    model: str = "gpt-4o-mini",
    file_order: bool = False,
) -> Iterator[Message]:
    """Replay RAGPulse's week-long RAG trace as telemetry events, one per request.

    Each event carries the trace's ``session_id`` as ``gen_ai.conversation.id``.

    Args:
        path: ``data/0_trace.jsonl``.
        speedup: Send at this many times real speed; None sends as fast as possible.
        seed: Seed of the synthetic fields and event ids.
        tenant_id: Tenant of every event.
        service: Application name (default ``campus-qa``); the asset id is ``rag-<service>``.
        end: Time of the last request; default now (UTC) when iteration starts.
        model: Model the synthetic fields are drawn for (the trace does not name one).
        file_order: Emit in file order, which steps back in time once (the file is two sorted
            runs), to exercise late-data handling; by default events go out in time order.

    Returns:
        An iterator of ``llm.telemetry`` messages keyed by tenant.
    """
    trace = read_ragpulse(Path(path))
    if not file_order:
        order = np.argsort(trace.offset_ms, kind="stable")
        sessions = trace.conversation_ids or []
        trace = TraceRequests(
            offset_ms=trace.offset_ms[order],
            input_tokens=trace.input_tokens[order],
            output_tokens=trace.output_tokens[order],
            conversation_ids=[sessions[i] for i in order.tolist()],
        )
    return _replay(
        trace,
        speedup=speedup,
        seed=seed,
        tenant_id=tenant_id,
        asset_id=f"rag-{service or 'campus-qa'}",
        end=end,
        model=model,
        source="ragpulse",
    )


def _replay(
    trace: TraceRequests,
    *,
    speedup: float | None,
    seed: int,
    tenant_id: str,
    asset_id: str,
    end: datetime | None,
    model: str,
    source: str,
) -> Iterator[Message]:
    if speedup is not None and speedup <= 0:
        raise ValueError("speedup must be > 0 or None")
    model_idx = model_index(model)
    if seed < 0:
        raise ValueError("seed must be >= 0")
    return _replay_events(trace, speedup, seed, tenant_id, asset_id, end, model_idx, source)


def _replay_events(
    trace: TraceRequests,
    speedup: float | None,
    seed: int,
    tenant_id: str,
    asset_id: str,
    end: datetime | None,
    model_idx: int,
    source: str,
) -> Iterator[Message]:
    n = len(trace)
    if n == 0:
        return
    end_ms = to_epoch_ms(end if end is not None else datetime.now(UTC))
    occurred_ms = end_ms - (int(trace.offset_ms.max()) - trace.offset_ms)
    rng = np.random.default_rng(seed)
    models = np.full(n, model_idx)
    latency, ttft = sample_timings(rng, models, trace.input_tokens, trace.output_tokens)
    cost = request_cost(models, trace.input_tokens, trace.output_tokens)
    event_ids = uuid4_strings(rng, n)
    constant: dict[str, Any] = {
        "llmhub.synthetic_fields": list(SYNTHETIC_FIELDS),
        "llmhub.source_trace": source,
    }
    sessions = trace.conversation_ids
    pace = _Pacer(speedup, int(trace.offset_ms[0]))
    for lo in range(0, n, _ENCODE_BATCH):
        part = slice(lo, min(lo + _ENCODE_BATCH, n))
        batch = TelemetryBatch(
            timestamp_ms=occurred_ms[part],
            event_ids=event_ids[part],
            tenant_ids=[tenant_id] * (part.stop - part.start),
            asset_ids=[asset_id] * (part.stop - part.start),
            model_idx=models[part],
            input_tokens=trace.input_tokens[part],
            output_tokens=trace.output_tokens[part],
            latency_ms=latency[part],
            ttft_ms=ttft[part],
            cost_usd=cost[part],
            attributes=(
                None
                if sessions is None
                else [{"gen_ai.conversation.id": s} for s in sessions[part]]
            ),
            constant_attributes=constant,
        )
        offsets = trace.offset_ms[part].tolist()
        for offset, message in zip(offsets, encode_telemetry(batch), strict=True):
            pace.wait(offset)
            yield message


class _Pacer:
    """Sleeps so that trace offsets map to wall time divided by ``speedup``."""

    def __init__(self, speedup: float | None, origin_ms: int) -> None:
        self.speedup = speedup
        self.origin_ms = origin_ms
        self.wall0: float | None = None

    def wait(self, offset_ms: int) -> None:
        if self.speedup is None:
            return
        now = time.monotonic()
        if self.wall0 is None:
            self.wall0 = now
        # An event earlier than the origin (an out-of-order trace row) goes out at once.
        due = self.wall0 + (offset_ms - self.origin_ms) / 1000.0 / self.speedup
        if due > now:
            time.sleep(due - now)
