"""Raw hypertables, the dead-letter table and the stored Kafka offsets.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Columns every raw table shares: the envelope, the unnamed body keys and where the row came from.
ENVELOPE = """
    event_id uuid not null,
    occurred_at timestamptz not null,
    tenant_id text not null,
    asset_id text not null,
    event_type text not null,
    source_module text not null,
    severity text not null,
    schema_version text not null,
    {body},
    attributes jsonb not null default '{{}}'::jsonb,
    kafka_partition integer not null,
    kafka_offset bigint not null,
    ingested_at timestamptz not null default now()
"""

BODIES = {
    "llm_requests": """
    operation_name text not null,
    provider text not null,
    request_model text not null,
    response_model text,
    response_id text,
    status text not null check (status in ('ok', 'error', 'rate_limited')),
    http_status_code smallint,
    error_type text,
    finish_reasons text[],
    input_tokens integer not null check (input_tokens >= 0),
    output_tokens integer not null check (output_tokens >= 0),
    cache_read_tokens integer not null check (cache_read_tokens >= 0),
    latency_ms double precision not null check (latency_ms >= 0),
    time_to_first_token_ms double precision check (time_to_first_token_ms >= 0),
    cost_usd numeric(18, 9) check (cost_usd >= 0),
    user_id text""",
    "security_alerts": """
    alert_type text not null,
    detector text not null,
    action_taken text not null,
    confidence double precision,
    request_id text,
    description text""",
    "cost_records": """
    provider text not null,
    model text not null,
    input_tokens bigint not null,
    output_tokens bigint not null,
    cache_read_tokens bigint not null,
    request_count bigint not null,
    cost_usd numeric(18, 9) not null check (cost_usd >= 0),
    currency text not null,
    billing_period_start date,
    billing_period_end date,
    invoice_id text,
    line_item_id text""",
    "policy_violations": """
    policy_id text not null,
    policy_name text,
    violation_type text not null,
    action_taken text not null,
    request_id text,
    description text""",
    "registry_events": """
    asset_kind text not null,
    name text not null,
    version text not null,
    provider text,
    model text,
    owner text,
    lifecycle_status text not null""",
}

# Per-tenant and per-model time-range reads are the marts' and analysts' access paths (time-only
# ranges use TimescaleDB's default occurred_at index). Every index costs ingest throughput, so
# llm_requests keeps just these two.
EXTRA_INDEXES = {
    "llm_requests": [
        "(tenant_id, asset_id, occurred_at desc)",
        "(request_model, occurred_at desc)",
    ],
    "cost_records": ["(tenant_id, asset_id, occurred_at desc)", "(model, occurred_at desc)"],
    "security_alerts": ["(tenant_id, asset_id, occurred_at desc)"],
    "policy_violations": ["(tenant_id, asset_id, occurred_at desc)"],
    "registry_events": ["(asset_id, occurred_at desc)"],
}


def upgrade() -> None:
    op.execute("create extension if not exists timescaledb")
    op.execute("create schema if not exists raw")
    for table, body in BODIES.items():
        op.execute(f"create table raw.{table} ({ENVELOPE.format(body=body.strip())})")
        op.execute(
            f"select create_hypertable('raw.{table}', by_range('occurred_at', interval '1 day'))"
        )
        # The unique key must include the partitioning column; a producer retry resends the same
        # bytes, so (event_id, occurred_at) identifies a redelivery.
        op.execute(f"create unique index {table}_event_uq on raw.{table} (event_id, occurred_at)")
        for i, columns in enumerate(EXTRA_INDEXES[table]):
            op.execute(f"create index {table}_ix{i} on raw.{table} {columns}")

    op.execute(
        """
        create table raw.dead_letter (
            topic text not null,
            kafka_partition integer not null,
            kafka_offset bigint not null,
            message_key bytea,
            raw_value bytea,
            error_class text not null,
            error text not null,
            kafka_timestamp timestamptz,
            received_at timestamptz not null default now(),
            primary key (topic, kafka_partition, kafka_offset)
        )
        """
    )
    op.execute("create index dead_letter_received_ix on raw.dead_letter (received_at)")
    op.execute("create index dead_letter_class_ix on raw.dead_letter (error_class, received_at)")

    op.execute(
        """
        create table raw.kafka_offsets (
            consumer_group text not null,
            topic text not null,
            kafka_partition integer not null,
            next_offset bigint not null check (next_offset >= 0),
            updated_at timestamptz not null default now(),
            primary key (consumer_group, topic, kafka_partition)
        )
        """
    )
    op.execute(
        "comment on table raw.kafka_offsets is "
        "'Next Kafka offset to read per partition, committed in the same transaction as the rows "
        "read before it: the source of truth for exactly-once ingestion.'"
    )


def downgrade() -> None:
    op.execute("drop table if exists raw.kafka_offsets")
    op.execute("drop table if exists raw.dead_letter")
    for table in BODIES:
        op.execute(f"drop table if exists raw.{table}")
