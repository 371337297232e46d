"""Column layout of the raw hypertables and the mapping from a validated event to a row.

Column names of each family's body equal the body model's field names, so a row is the envelope,
the body fields in table order, the leftover attributes and the Kafka coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any

from llmhub.contract.models import Envelope
from llmhub.contract.topics import TOPICS

ENVELOPE_COLUMNS: tuple[str, ...] = (
    "event_id",
    "occurred_at",
    "tenant_id",
    "asset_id",
    "event_type",
    "source_module",
    "severity",
    "schema_version",
)
TRAILER_COLUMNS: tuple[str, ...] = ("attributes", "kafka_partition", "kafka_offset")

BODY_COLUMNS: dict[str, tuple[str, ...]] = {
    "llm_requests": (
        "operation_name",
        "provider",
        "request_model",
        "response_model",
        "response_id",
        "status",
        "http_status_code",
        "error_type",
        "finish_reasons",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "latency_ms",
        "time_to_first_token_ms",
        "cost_usd",
        "user_id",
    ),
    "security_alerts": (
        "alert_type",
        "detector",
        "action_taken",
        "confidence",
        "request_id",
        "description",
    ),
    "cost_records": (
        "provider",
        "model",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "request_count",
        "cost_usd",
        "currency",
        "billing_period_start",
        "billing_period_end",
        "invoice_id",
        "line_item_id",
    ),
    "policy_violations": (
        "policy_id",
        "policy_name",
        "violation_type",
        "action_taken",
        "request_id",
        "description",
    ),
    "registry_events": (
        "asset_kind",
        "name",
        "version",
        "provider",
        "model",
        "owner",
        "lifecycle_status",
    ),
}


# Columns of type text[]: their lists are rendered here as array literals, which the server
# parses for the column type; psycopg's Python list dumper cost ~5% of ingestion (py-spy).
ARRAY_COLUMNS = frozenset({"finish_reasons"})


def text_array(values: list[str] | None) -> str | None:
    """A PostgreSQL text[] literal, every element quoted (so NULL, commas, braces and spaces
    stay text) with backslashes and double quotes escaped."""
    if values is None:
        return None
    return (
        "{"
        + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
        + "}"
    )


@dataclass(frozen=True)
class RawTable:
    """One raw hypertable: its name and the column order rows are copied in."""

    name: str
    body_columns: tuple[str, ...]

    @property
    def qualified_name(self) -> str:
        return f"raw.{self.name}"

    @property
    def columns(self) -> tuple[str, ...]:
        return ENVELOPE_COLUMNS + self.body_columns + TRAILER_COLUMNS

    def __post_init__(self) -> None:
        object.__setattr__(self, "_get_body", attrgetter(*self.body_columns))
        arrays = [i for i, c in enumerate(self.body_columns) if c in ARRAY_COLUMNS]
        object.__setattr__(self, "_arrays", arrays)

    def row(
        self,
        event: Envelope,
        occurred_at: datetime,
        attributes: str,
        partition: int,
        offset: int,
    ) -> tuple[Any, ...]:
        """The row for a validated event (``occurred_at`` already in UTC), in column order;
        psycopg's COPY formatter renders each Python value (lists become text arrays)."""
        body_values = self._get_body(event.body)  # type: ignore[attr-defined]
        if self._arrays:  # type: ignore[attr-defined]
            body_values = list(body_values)
            for i in self._arrays:  # type: ignore[attr-defined]
                body_values[i] = text_array(body_values[i])
        return (
            event.event_id,
            occurred_at,
            event.tenant_id,
            event.asset_id,
            event.event_type,
            event.source_module,
            str(event.severity),  # the plain text (an enum member renders slower)
            event.schema_version,
            *body_values,
            attributes,
            partition,
            offset,
        )


TABLES: dict[str, RawTable] = {
    spec.table: RawTable(spec.table, BODY_COLUMNS[spec.table]) for spec in TOPICS
}
