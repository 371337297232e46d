"""Least-privilege group roles for the raw layer.

``llmhub_ingest`` can append raw rows and dead letters and move its own offsets, nothing more;
``llmhub_raw_reader`` can read the raw layer (dbt and the freshness checks). Deployments grant
these to their login roles; the local stack's superuser does not need them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

RAW_TABLES = (
    "llm_requests",
    "security_alerts",
    "cost_records",
    "policy_violations",
    "registry_events",
)


def _create_role(name: str) -> None:
    # Roles are cluster-wide and PostgreSQL has no `create role if not exists`.
    op.execute(
        f"do $$ begin if not exists (select from pg_roles where rolname = '{name}') then "
        f"create role {name} nologin; end if; end $$"
    )


def upgrade() -> None:
    _create_role("llmhub_ingest")
    _create_role("llmhub_raw_reader")
    op.execute("grant usage on schema raw to llmhub_ingest, llmhub_raw_reader")
    for table in RAW_TABLES:
        op.execute(f"grant select, insert on raw.{table} to llmhub_ingest")
    op.execute("grant select, insert on raw.dead_letter to llmhub_ingest")
    op.execute("grant select, insert, update on raw.kafka_offsets to llmhub_ingest")
    op.execute("grant select, insert on raw.retention_runs to llmhub_ingest")
    op.execute("grant select on all tables in schema raw to llmhub_raw_reader")
    op.execute("alter default privileges in schema raw grant select on tables to llmhub_raw_reader")


def downgrade() -> None:
    for role in ("llmhub_ingest", "llmhub_raw_reader"):
        op.execute(
            f"do $$ begin if exists (select from pg_roles where rolname = '{role}') then "
            f"revoke all on all tables in schema raw from {role}; "
            f"revoke usage on schema raw from {role}; "
            f"alter default privileges in schema raw revoke all on tables from {role}; "
            f"end if; end $$"
        )
