"""What the detector gate reads from the hub about its held-out week, on the real schema."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pandas as pd
import psycopg
import pytest
from psycopg.types.json import Jsonb

from assets.ml_models.detector import (
    KNOWN_INCIDENTS,
    REGISTRY_CHANGES,
    TRUE_POSITIVES,
    known_windows,
)
from llmhub.config import Settings
from llmhub.ml_data import read_frame
from ml.anomaly.shift_evaluation import CHANGE_HOURS, KnownWindow

pytestmark = pytest.mark.integration

WEEK = datetime(2026, 11, 23, 6, tzinfo=UTC)
UNTIL = WEEK + timedelta(days=7)
CHANGE = timedelta(hours=CHANGE_HOURS)

REGISTRY = """
insert into raw.registry_events (
    event_id, occurred_at, tenant_id, asset_id, event_type, source_module, severity,
    schema_version, asset_kind, name, version, model, lifecycle_status, attributes,
    kafka_partition, kafka_offset
) values (
    gen_random_uuid(), %s, 't', %s, %s, 'registry', 'info', '1.0', %s, %s, '2', %s, 'active',
    %s, 0, %s
)
"""
INCIDENT = """
insert into analytics.incidents (
    incident_id, tenant_id, tenant_ids, asset_ids, opened_at, last_seen_at, status, severity,
    root_cause_type, root_cause_entity, confidence, candidates, impact_score,
    affected_requests, excess_cost_usd, excess_volume_usd, excess_tokens_per_request_usd,
    excess_price_mix_usd, cost_baseline, explanation, rules, signature, member_count
) values (
    %s, 't', array['t'], %s, %s, %s, 'open', 'high', 'unknown', 't', 0.5, '[]', 10, 0, 0, 0,
    0, 0, 'none', 'x', array['x'], %s, 1
)
"""
MEMBER = """
insert into analytics.incident_members (
    incident_id, member_kind, member_key, tenant_id, asset_id, occurred_at, detail
) values (%s, %s, %s, 't', %s, %s, 'x')
"""
FEEDBACK = """
insert into analytics.anomaly_feedback (bucket_at, tenant_id, asset_id, request_model, metric,
    verdict) values (%s, 't', 'app-4', 'm', 'cost_usd', %s)
"""


@pytest.fixture
def conn(test_settings: Settings) -> Iterator[psycopg.Connection]:
    with psycopg.connect(test_settings.database_url, autocommit=True) as conn:
        yield conn
        for table in (
            "analytics.incident_feedback",
            "analytics.incident_members",
            "analytics.incidents",
            "analytics.anomaly_feedback",
            "raw.registry_events",
        ):
            conn.execute(f"delete from {table}")  # noqa: S608 -- constant names


def test_the_hub_knowledge_of_the_week_becomes_windows(conn: psycopg.Connection) -> None:
    at = WEEK + timedelta(days=2, minutes=28)
    registry = [
        # (when, asset, event type, kind, name, model): only updates of models and applications
        # in the week or the CHANGE_HOURS before it name routes.
        (at, "model-t-m", "asset_updated", "model", "m", None),
        (at, "app-1", "asset_updated", "application", "app-1", "m"),
        (at, "prompt-1", "asset_updated", "prompt", "p", None),
        (at, "model-t-n", "asset_registered", "model", "n", "n"),
        (WEEK - CHANGE - timedelta(hours=1), "app-2", "asset_updated", "application", "a", "m"),
    ]
    for offset, (when, asset, event, kind, name, model) in enumerate(registry):
        conn.execute(REGISTRY, (when, asset, event, kind, name, model, Jsonb({}), offset))
    opened = WEEK + timedelta(days=3)
    # One incident with an event behind it, one an analyst confirmed, one of anomalies alone.
    for incident, asset, kind in (("i-1", "app-3", "event"), ("i-2", "app-5", "anomaly")):
        conn.execute(INCIDENT, (incident, [asset], opened, opened + timedelta(hours=2), incident))
        conn.execute(MEMBER, (incident, kind, f"{incident}-m", asset, opened))
    conn.execute(INCIDENT, ("i-3", ["app-6"], opened, opened, "i-3"))
    conn.execute(MEMBER, ("i-3", "anomaly", "i-3-m", "app-6", opened))
    conn.execute(
        "insert into analytics.incident_feedback (incident_id, verdict) "
        "values ('i-3', 'root_cause_right')"
    )
    conn.execute(FEEDBACK, (opened, "true_positive"))
    conn.execute(FEEDBACK, (opened + timedelta(hours=1), "false_positive"))

    windows = known_windows(
        read_frame(conn, REGISTRY_CHANGES, (WEEK - CHANGE, UNTIL)),
        read_frame(conn, KNOWN_INCIDENTS, (UNTIL, WEEK)),
        read_frame(conn, TRUE_POSITIVES, (WEEK, UNTIL)),
    )

    hour = pd.Timedelta(hours=1)
    assert sorted(windows, key=repr) == sorted(
        [
            KnownWindow("t", None, "m", at, at + CHANGE, "registry_change"),
            KnownWindow("t", "app-1", None, at, at + CHANGE, "registry_change"),
            KnownWindow("t", "app-3", None, opened, opened + 3 * hour, "incident"),
            KnownWindow("t", "app-6", None, opened, opened + hour, "incident"),
            KnownWindow("t", "app-4", "m", opened, opened + hour, "true_positive"),
        ],
        key=repr,
    )
