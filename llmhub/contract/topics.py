"""The five Kafka topics of the event contract and the raw table each one lands in."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TopicSpec:
    """One source family: its topic, its raw hypertable and its default partition count."""

    topic: str
    family: str
    table: str
    source_module: str
    partitions: int


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("llm.telemetry", "telemetry", "llm_requests", "observatory", 4),
    TopicSpec("llm.security", "security", "security_alerts", "sentinel", 2),
    TopicSpec("llm.cost", "cost", "cost_records", "costops", 2),
    TopicSpec("llm.governance", "governance", "policy_violations", "policy_engine", 2),
    TopicSpec("llm.registry", "registry", "registry_events", "registry", 1),
)

BY_TOPIC: dict[str, TopicSpec] = {spec.topic: spec for spec in TOPICS}
BY_FAMILY: dict[str, TopicSpec] = {spec.family: spec for spec in TOPICS}
RAW_TABLES: tuple[str, ...] = tuple(spec.table for spec in TOPICS)
