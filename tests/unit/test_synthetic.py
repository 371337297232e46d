"""The synthetic traffic generator: determinism, contract validity, realism and incidents."""

from __future__ import annotations

import itertools
import json
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from llmhub.contract.models import EVENT_MODELS
from llmhub.contract.topics import BY_FAMILY, BY_TOPIC
from llmhub.producers.sink import Message
from llmhub.producers.synthetic import Incident, SyntheticTraffic, generate
from llmhub.producers.synthetic.catalog import MODEL_INDEX, MODELS
from llmhub.producers.synthetic.requests import request_cost, uuid4_strings

END = datetime(2026, 3, 12, 6, 0, tzinfo=UTC)  # a Thursday, so one day stays on weekdays
TELEMETRY = BY_FAMILY["telemetry"].topic


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def traffic() -> SyntheticTraffic:
    return generate(40_000, days=1.0, seed=5, end=END)


@pytest.fixture(scope="module")
def messages(traffic: SyntheticTraffic) -> list[Message]:
    return traffic.messages()


@pytest.fixture(scope="module")
def events(messages: list[Message]) -> list[tuple[str, dict[str, Any]]]:
    return [(BY_TOPIC[m.topic].family, orjson.loads(m.value)) for m in messages]


@pytest.fixture(scope="module")
def telemetry(events: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [e for family, e in events if family == "telemetry"]


def _incident(traffic: SyntheticTraffic, kind: str) -> Incident:
    (found,) = [i for i in traffic.incidents if i.kind == kind]
    return found


def test_same_seed_gives_identical_messages() -> None:
    first = generate(3_000, seed=11, end=END).messages()
    again = generate(3_000, seed=11, end=END).messages()
    other = generate(3_000, seed=12, end=END).messages()
    assert first == again
    assert [m.value for m in first] != [m.value for m in other]


def test_iterating_twice_gives_the_same_stream() -> None:
    traffic = generate(2_000, days=0.5, seed=3, end=END)
    assert list(traffic.iter_messages()) == list(traffic)


def test_every_event_validates_against_the_contract(messages: list[Message]) -> None:
    for message in messages:
        family = BY_TOPIC[message.topic].family
        EVENT_MODELS[family].model_validate_json(message.value)


def test_telemetry_count_is_exact_and_about_94_percent(
    traffic: SyntheticTraffic, messages: list[Message]
) -> None:
    counts = Counter(m.topic for m in messages)
    assert counts[TELEMETRY] == traffic.events
    assert set(counts) == set(BY_TOPIC)
    assert 0.92 <= counts[TELEMETRY] / len(messages) <= 0.96


def test_registrations_come_first_and_updates_mid_window(
    traffic: SyntheticTraffic, events: list[tuple[str, dict[str, Any]]]
) -> None:
    first_other = next(i for i, (family, _) in enumerate(events) if family != "registry")
    head = [e for _, e in events[:first_other]]
    assert {e["event_type"] for e in head} == {"asset_registered"}
    registered = {(e["tenant_id"], e["asset_id"]) for e in head}
    for app in traffic.applications:
        assert (app.tenant_id, app.asset_id) in registered
    updates = [e for f, e in events if f == "registry" and e["event_type"] == "asset_updated"]
    assert updates
    assert all(traffic.start < _at(e["occurred_at"]) < traffic.end for e in updates)


def test_events_fall_in_the_window_and_telemetry_is_sorted(
    traffic: SyntheticTraffic, messages: list[Message], telemetry: list[dict[str, Any]]
) -> None:
    stamps = [_at(e["occurred_at"]) for e in telemetry]
    assert stamps == sorted(stamps)
    assert traffic.start <= stamps[0] and stamps[-1] < traffic.end
    assert traffic.end - traffic.start == timedelta(days=1)
    late = traffic.end + timedelta(seconds=1)
    assert all(m.timestamp_ms is not None for m in messages)
    assert max(m.timestamp_ms or 0 for m in messages) <= late.timestamp() * 1000


def test_key_is_application_and_timestamp_is_occurred_at(
    messages: list[Message], events: list[tuple[str, dict[str, Any]]]
) -> None:
    for message, (family, event) in zip(messages, events, strict=True):
        # Telemetry is keyed by application (even partitions), the sparse families by tenant.
        if family == "telemetry":
            assert message.key == f"{event['tenant_id']}/{event['asset_id']}".encode()
        else:
            assert message.key == event["tenant_id"].encode()
        assert message.timestamp_ms == round(_at(event["occurred_at"]).timestamp() * 1000)


def test_default_end_is_now_truncated_to_the_minute() -> None:
    # Bounded by the clock read before and after, not "within 2 minutes of now" (load-dependent).
    before = datetime.now(UTC).replace(second=0, microsecond=0)
    traffic = generate(10)
    after = datetime.now(UTC)
    assert traffic.end.second == 0 and traffic.end.microsecond == 0
    assert before <= traffic.end <= after


def test_tenant_mix_is_skewed(traffic: SyntheticTraffic, telemetry: list[dict[str, Any]]) -> None:
    per_tenant = Counter(e["tenant_id"] for e in telemetry)
    assert 4 <= len(per_tenant) <= 6
    shares = sorted(per_tenant.values(), reverse=True)
    assert shares[0] > 2 * shares[-1]


def test_daily_cycle_peaks_in_business_hours(telemetry: list[dict[str, Any]]) -> None:
    hours = np.bincount([_at(e["occurred_at"]).hour for e in telemetry], minlength=24)
    assert hours.max() > 2 * hours.min()
    assert 11 <= int(hours.argmax()) <= 19


def test_weekends_are_quieter() -> None:
    traffic = generate(30_000, days=14, seed=2, end=END, incidents=False)
    per_day: Counter[datetime] = Counter()
    for message in traffic.iter_messages():
        if message.topic == TELEMETRY and message.timestamp_ms is not None:
            day = datetime.fromtimestamp(message.timestamp_ms / 1000, tz=UTC).date()
            per_day[day] += 1
    full_days = [d for d in per_day if traffic.start.date() < d < traffic.end.date()]
    weekend = np.mean([per_day[d] for d in full_days if d.weekday() >= 5])
    weekday = np.mean([per_day[d] for d in full_days if d.weekday() < 5])
    assert weekend < 0.6 * weekday


def test_error_and_rate_limit_rates_are_realistic(telemetry: list[dict[str, Any]]) -> None:
    status = Counter(e["body"].get("http.response.status_code") for e in telemetry)
    errors = sum(1 for e in telemetry if "error.type" in e["body"])
    assert 0.01 <= errors / len(telemetry) <= 0.05
    assert status[429] > 0
    assert status[200] == len(telemetry) - errors


def test_one_incident_of_each_kind_in_separate_slots(traffic: SyntheticTraffic) -> None:
    kinds = sorted(i.kind for i in traffic.incidents)
    assert kinds == ["cost_spike", "error_storm", "latency_regression", "security_burst"]
    windows = sorted((i.start, i.end) for i in traffic.incidents)
    for (_, end), (start, _) in itertools.pairwise(windows):
        assert end <= start
    for incident in traffic.incidents:
        assert traffic.start <= incident.start < incident.end <= traffic.end


def test_no_incidents_when_disabled() -> None:
    traffic = generate(1_000, seed=5, end=END, incidents=False)
    assert traffic.incidents == []


def test_latency_regression_triples_the_model_latency(
    traffic: SyntheticTraffic, telemetry: list[dict[str, Any]]
) -> None:
    incident = _incident(traffic, "latency_regression")
    inside, outside = [], []
    for e in telemetry:
        body = e["body"]
        if body["gen_ai.request.model"] != incident.model or "error.type" in body:
            continue
        in_window = incident.start <= _at(e["occurred_at"]) < incident.end
        (inside if in_window else outside).append(body["latency_ms"])
    ratio = np.median(inside) / np.median(outside)
    assert 2.3 <= ratio <= 3.8


def test_cost_spike_multiplies_the_application_cost(
    traffic: SyntheticTraffic, telemetry: list[dict[str, Any]]
) -> None:
    incident = _incident(traffic, "cost_spike")
    inside, outside = [], []
    for e in telemetry:
        if e["asset_id"] == incident.asset_id and "error.type" not in e["body"]:
            in_window = incident.start <= _at(e["occurred_at"]) < incident.end
            (inside if in_window else outside).append(e["body"]["cost_usd"])
    assert 3.0 <= np.mean(inside) / np.mean(outside) <= 8.0


def test_error_storm_raises_the_error_rate(
    traffic: SyntheticTraffic, telemetry: list[dict[str, Any]]
) -> None:
    incident = _incident(traffic, "error_storm")
    inside, outside = [], []
    for e in telemetry:
        if e["asset_id"] == incident.asset_id:
            failed = e["body"].get("http.response.status_code") != 200
            rate_limited = e["body"].get("http.response.status_code") == 429
            in_window = incident.start <= _at(e["occurred_at"]) < incident.end
            (inside if in_window else outside).append(failed and not rate_limited)
    assert 0.3 <= incident.magnitude <= 0.5
    assert np.mean(inside) >= 0.2
    assert np.mean(inside) > 10 * np.mean(outside)


def test_security_burst_multiplies_alerts(
    traffic: SyntheticTraffic, events: list[tuple[str, dict[str, Any]]]
) -> None:
    incident = _incident(traffic, "security_burst")
    counts: Counter[tuple[str, bool]] = Counter()
    for family, e in events:
        if family in ("telemetry", "security") and e["asset_id"] == incident.asset_id:
            counts[family, incident.start <= _at(e["occurred_at"]) < incident.end] += 1
    rate_in = counts["security", True] / counts["telemetry", True]
    rate_out = counts["security", False] / counts["telemetry", False]
    assert rate_in > 10 * rate_out


def test_security_and_governance_point_at_real_requests(
    events: list[tuple[str, dict[str, Any]]],
) -> None:
    requests = {e["event_id"]: e for family, e in events if family == "telemetry"}
    for family, e in events:
        if family in ("security", "governance"):
            request = requests[e["body"]["request_id"]]
            assert request["asset_id"] == e["asset_id"]


def test_billing_matches_telemetry_within_two_percent(
    events: list[tuple[str, dict[str, Any]]],
) -> None:
    metered: defaultdict[tuple[str, str, str], float] = defaultdict(float)
    tokens: Counter[tuple[str, str, str]] = Counter()
    succeeded: Counter[tuple[str, str, str]] = Counter()
    for family, e in events:
        if family == "telemetry" and "error.type" not in e["body"]:
            key = (e["occurred_at"][:10], e["tenant_id"], e["body"]["gen_ai.request.model"])
            metered[key] += e["body"]["cost_usd"]
            tokens[key] += e["body"]["gen_ai.usage.output_tokens"]
            succeeded[key] += 1
    billed: dict[tuple[str, str, str], dict[str, Any]] = {}
    for family, e in events:
        if family == "cost":
            body = e["body"]
            assert body["billing_period_start"] == body["billing_period_end"]
            billed[(body["billing_period_start"], e["tenant_id"], body["model"])] = body
    assert billed.keys() == succeeded.keys()
    for key, body in billed.items():
        assert body["request_count"] == succeeded[key]
        assert body["output_tokens"] == tokens[key]
        assert body["cost_usd"] == pytest.approx(metered[key], rel=0.021, abs=1e-6)
    total_billed = sum(b["cost_usd"] for b in billed.values())
    assert total_billed == pytest.approx(sum(metered.values()), rel=0.02)


def test_ground_truth_round_trips(traffic: SyntheticTraffic, tmp_path: Path) -> None:
    path = tmp_path / "truth.json"
    traffic.write_ground_truth(path)
    truth = json.loads(path.read_text())
    assert truth["seed"] == traffic.seed
    assert [i["kind"] for i in truth["incidents"]] == [i.kind for i in traffic.incidents]
    for written, incident in zip(truth["incidents"], traffic.incidents, strict=True):
        assert _at(written["start"]) == incident.start
        assert written["magnitude"] == incident.magnitude


@pytest.mark.parametrize(
    "kwargs",
    [{"events": -1}, {"events": 10, "days": 0}, {"events": 10, "seed": -1}],
)
def test_invalid_arguments_are_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        generate(**kwargs)


def test_uuid4_strings_are_valid_and_unique() -> None:
    ids = uuid4_strings(np.random.default_rng(0), 10_000)
    parsed = [uuid.UUID(s) for s in ids]
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 for u in parsed)
    assert [str(u) for u in parsed] == ids
    assert len(set(ids)) == len(ids)


def test_request_cost_uses_the_price_table() -> None:
    gpt4o = MODEL_INDEX["gpt-4o"]
    spec = MODELS[gpt4o]
    cost = request_cost(
        np.array([gpt4o]), np.array([1_000_000]), np.array([1_000_000]), np.array([400_000])
    )
    expected = (
        0.6 * spec.input_usd_per_mtok
        + 0.4 * spec.cache_read_usd_per_mtok
        + spec.output_usd_per_mtok
    )
    assert cost[0] == pytest.approx(expected)


@pytest.fixture(scope="module")
def realistic() -> tuple[SyntheticTraffic, list[dict[str, Any]]]:
    traffic = generate(60_000, days=7.0, seed=7, end=END, incident_set="realistic")
    events = [orjson.loads(m.value) for m in traffic.iter_messages() if m.topic == TELEMETRY]
    return traffic, events


def test_the_realistic_set_adds_subtle_incidents_on_one_route_each(
    realistic: tuple[SyntheticTraffic, list[dict[str, Any]]],
) -> None:
    traffic, _ = realistic
    kinds = Counter(i.kind for i in traffic.incidents)
    assert set(kinds) == {
        "latency_regression",
        "cost_spike",
        "error_storm",
        "security_burst",
        "subtle_latency",
        "subtle_cost",
        "subtle_errors",
        "latency_drift",
        "traffic_stop",
        "level_shift",
    }
    assert set(kinds.values()) == {1}
    subtle = {i.kind: i for i in traffic.incidents if i.model and i.asset_id}
    assert 1.3 <= subtle["subtle_latency"].magnitude <= 1.5
    assert 1.25 <= subtle["subtle_cost"].magnitude <= 1.4
    assert 0.02 <= subtle["subtle_errors"].magnitude <= 0.05
    assert subtle["level_shift"].end == traffic.end
    # One route of many: all six name an application and a model.
    assert len(subtle) == 6


def test_a_stopped_route_serves_nothing_and_its_application_other_routes_go_on(
    realistic: tuple[SyntheticTraffic, list[dict[str, Any]]],
) -> None:
    traffic, events = realistic
    stop = _incident(traffic, "traffic_stop")
    assert 10 <= stop.start.hour <= 14
    during = [
        e
        for e in events
        if e["asset_id"] == stop.asset_id and stop.start <= _at(e["occurred_at"]) < stop.end
    ]
    assert all(e["body"]["gen_ai.request.model"] != stop.model for e in during)
    before = [
        e
        for e in events
        if e["asset_id"] == stop.asset_id
        and e["body"]["gen_ai.request.model"] == stop.model
        and stop.start - timedelta(hours=24)
        <= _at(e["occurred_at"])
        < stop.end - timedelta(hours=24)
    ]
    assert len(before) > 20


def test_a_drift_grows_gradually(
    realistic: tuple[SyntheticTraffic, list[dict[str, Any]]],
) -> None:
    traffic, events = realistic
    drift = _incident(traffic, "latency_drift")
    third = (drift.end - drift.start) / 3
    medians = []
    for k in range(3):
        lo, hi = drift.start + k * third, drift.start + (k + 1) * third
        medians.append(
            np.median(
                [
                    e["body"]["latency_ms"]
                    for e in events
                    if e["asset_id"] == drift.asset_id
                    and e["body"]["gen_ai.request.model"] == drift.model
                    and "error.type" not in e["body"]
                    and lo <= _at(e["occurred_at"]) < hi
                ]
            )
        )
    # The last third runs at about the full factor, the first at about a fifth of it.
    assert medians[2] / medians[0] > 1.0 + 0.4 * (drift.magnitude - 1.0)


def test_the_gross_set_is_unchanged_by_the_realistic_option() -> None:
    # The default set keeps its four incidents in four slots (the demo and the tests read them).
    traffic = generate(1_000, days=1.0, seed=5, end=END)
    assert [i.kind for i in traffic.incidents] == [
        "latency_regression",
        "cost_spike",
        "error_storm",
        "security_burst",
    ]
    with pytest.raises(ValueError, match="incident set"):
        generate(1_000, seed=5, end=END, incident_set="nope")
