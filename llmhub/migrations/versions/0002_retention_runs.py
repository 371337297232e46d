"""Audit table of retention runs (what the Dagster retention asset materialises).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        create table raw.retention_runs (
            ran_at timestamptz not null default now(),
            table_name text not null,
            keep_days integer not null check (keep_days > 0),
            dropped_chunks text[] not null,
            primary key (ran_at, table_name)
        )
        """
    )


def downgrade() -> None:
    op.execute("drop table if exists raw.retention_runs")
