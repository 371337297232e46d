"""Dead letters remember their replay: when one was re-ingested, and what the last attempt found.

``llmhub dead-letter replay`` re-reads dead letters through the current contract after a fix;
a replayed dead letter is marked (``replayed_at``), never deleted, so the history of what a
producer sent wrong stays queryable, and a second replay skips it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        alter table raw.dead_letter
            add column replayed_at timestamptz,
            add column replay_outcome text
        """
    )
    op.execute(
        "create index dead_letter_pending_ix on raw.dead_letter (error_class, received_at) "
        "where replayed_at is null"
    )


def downgrade() -> None:
    op.execute("drop index if exists raw.dead_letter_pending_ix")
    op.execute(
        "alter table raw.dead_letter drop column if exists replay_outcome, "
        "drop column if exists replayed_at"
    )
