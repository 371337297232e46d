"""The scenario world as Kafka messages (the pipeline mode of ``eval-correlation``) and the
generator's rule that no two scenarios share an application."""

from __future__ import annotations

from collections import Counter

import orjson
import pandas as pd
import pytest
from pydantic import ValidationError

from llmhub.contract.models import EVENT_MODELS
from llmhub.contract.topics import BY_TOPIC
from llmhub.producers.scenarios import generate_scenarios, scenario_messages


@pytest.fixture(scope="module")
def small():
    data = generate_scenarios(3, days=4, requests_per_hour=400)
    return data, list(scenario_messages(data))


def test_one_telemetry_event_per_request_of_each_route_hour(small) -> None:
    data, messages = small
    counts: Counter[tuple[str, str, str, pd.Timestamp]] = Counter()
    errors: Counter[tuple[str, str, str, pd.Timestamp]] = Counter()
    for m in messages:
        if m.topic != "llm.telemetry":
            continue
        event = orjson.loads(m.value)
        hour = pd.Timestamp(event["occurred_at"]).floor("h")
        key = (event["tenant_id"], event["asset_id"], event["body"]["gen_ai.request.model"], hour)
        counts[key] += 1
        errors[key] += event["body"].get("http.response.status_code") == 500
    for r in data.series.itertuples(index=False):
        key = (r.tenant_id, r.asset_id, r.request_model, r.bucket_at)
        assert counts[key] == r.request_count
        assert errors[key] == round(r.error_rate * r.request_count)


def test_every_event_is_sent_with_its_id_and_the_contract_accepts_it(small) -> None:
    # The policy change behind a compliance cascade (asset kind "policy") once broke the
    # registry contract and was dead-lettered: the cascade had no cause.
    data, messages = small
    rejected = []
    sent_ids = set()
    for m in messages:
        if m.topic == "llm.telemetry":
            continue
        event = orjson.loads(m.value)
        sent_ids.add(event["event_id"])
        try:
            EVENT_MODELS[BY_TOPIC[m.topic].family].model_validate(event)
        except ValidationError:
            rejected.append(event["body"].get("asset_kind"))
    assert sent_ids == set(data.events["event_id"])
    assert rejected == []
    assert "policy" in set(data.events["asset_kind"].dropna())


APPLICATION_WIDE = {"prompt_change", "jailbreak_campaign", "decoy_change"}


@pytest.mark.parametrize("seed", [12, 15])
def test_no_scenario_acting_on_an_application_shares_it(seed: int) -> None:
    # Held-out seed 15's prompt change and jailbreak each shared a route with its provider
    # outage in the same hours: neither ground truth could own those anomalies and costs.
    data = generate_scenarios(seed)
    by_id = data.events.set_index("event_id")
    apps: dict[str, set[tuple[str, str]]] = {}
    for s in data.scenarios:
        mine = {(m.split("/")[0], m.split("/")[1]) for m in s.members}
        if s.kind in APPLICATION_WIDE:
            mine |= {(by_id.loc[e, "tenant_id"], by_id.loc[e, "asset_id"]) for e in s.event_ids}
        apps[s.scenario_id] = mine
    kinds = {s.scenario_id: s.kind for s in data.scenarios}
    shared = {
        (a, b): apps[a] & apps[b]
        for a in apps
        for b in apps
        if a != b and kinds[a] in APPLICATION_WIDE and apps[a] & apps[b]
    }
    assert shared == {}
    per_scenario = [{m.rsplit("/", 1)[0] for m in s.members} for s in data.scenarios]
    assert sum(map(len, per_scenario)) == len(set().union(*per_scenario))
