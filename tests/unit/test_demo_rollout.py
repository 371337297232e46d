"""The demo's traffic carries a model-version rollout in its scored hours that the correlation
engine turns into an incident (the demo's incident step had nothing to show before)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from llmhub.demo import DEMO_ROLLOUT_HOURS
from llmhub.producers.scenarios import detect_anomalies, providers
from llmhub.producers.synthetic import generate
from ml.correlation.engine import correlate

END = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SCORED_HOURS = 6  # the scoring job's default ``score_hours``


def _frames(seed: int) -> tuple[pd.DataFrame, pd.DataFrame, list]:
    traffic = generate(
        events=60_000, days=4, seed=seed, end=END, incidents=False, rollout_hours=DEMO_ROLLOUT_HOURS
    )
    requests, events = [], []
    for message in traffic.iter_messages():
        if message.topic not in ("llm.telemetry", "llm.registry"):
            continue
        event = json.loads(message.value)
        body = event["body"]
        if message.topic == "llm.telemetry":
            requests.append(
                (
                    event["occurred_at"],
                    event["tenant_id"],
                    event["asset_id"],
                    body["gen_ai.request.model"],
                    body.get("gen_ai.usage.input_tokens", 0)
                    + body.get("gen_ai.usage.output_tokens", 0),
                    body.get("cost_usd", 0.0),
                    body.get("http.response.status_code", 200) != 200,
                    body["latency_ms"],
                )
            )
        elif event["event_type"] == "asset_updated":
            events.append(
                {
                    "event_id": event["event_id"],
                    "occurred_at": pd.Timestamp(event["occurred_at"]),
                    "family": "registry",
                    "event_type": event["event_type"],
                    "tenant_id": event["tenant_id"],
                    "asset_id": event["asset_id"],
                    **{k: body.get(k) for k in ("name", "version", "asset_kind", "model")},
                    "change": body.get("change"),
                }
            )
    frame = pd.DataFrame(
        requests,
        columns=["at", "tenant_id", "asset_id", "request_model", "tokens", "cost", "error", "ms"],
    )
    frame["bucket_at"] = pd.to_datetime(frame["at"], utc=True).dt.floor("h")
    series = (
        frame.groupby(["bucket_at", "tenant_id", "asset_id", "request_model"])
        .agg(
            request_count=("ms", "size"),
            tokens=("tokens", "sum"),
            cost_usd=("cost", "sum"),
            error_rate=("error", "mean"),
            latency_p95_ms=("ms", lambda x: float(np.percentile(x, 95))),
        )
        .reset_index()
    )
    return series, pd.DataFrame(events), traffic.incidents


def test_demo_rollout_opens_an_incident_in_the_scored_hours() -> None:
    series, events, truth = _frames(seed=11)
    rollout = next(i for i in truth if i.kind == "model_rollout")
    since = pd.Timestamp(END) - pd.Timedelta(hours=SCORED_HOURS)
    assert pd.Timestamp(rollout.start) >= since
    # Series with a request in most hours: the stand-in detector needs a history per hour of day.
    busy = series.groupby(["tenant_id", "asset_id", "request_model"])["bucket_at"].transform("size")
    series = series[busy >= 0.9 * series["bucket_at"].nunique()]
    anomalies = detect_anomalies(series, since)
    result = correlate(anomalies, events, providers(), series=series)
    blamed = [i for i in result.incidents if i.root_cause_type == "model_version"]
    assert blamed, [(i.root_cause_type, i.root_cause_entity) for i in result.incidents]
    assert blamed[0].root_cause_entity.startswith(f"{rollout.tenant_id}/{rollout.model}@")
    assert blamed[0].opened_at >= since
    assert any(m.kind == "event" for m in blamed[0].members)
