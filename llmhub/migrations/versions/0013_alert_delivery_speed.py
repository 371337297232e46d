"""Alert delivery at volume, and acknowledgement from where on-call people are.

- ``outbox_due_ix`` becomes ``(next_attempt_at, created_at)``: the sender claims the oldest due
  row in that order, and with the old one-column index every claim sorted all the rows due at
  the same instant (a burst: tens of thousands), so draining a burst was quadratic.
- ``alert_state.resolved_by``: who resolved an alert by hand (a PagerDuty incident resolved in
  PagerDuty), beside ``acked_by``; ``ack_source`` says where an acknowledgement came from
  (``cli``, ``slack``, ``pagerduty``).

Revision ID: 0013
Revises: 0011
Create Date: 2026-11-29
"""

from alembic import op

revision = "0013"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("drop index if exists alerting.outbox_due_ix")
    op.execute(
        "create index outbox_due_ix on alerting.outbox (next_attempt_at, created_at) "
        "where status = 'pending'"
    )
    op.execute("alter table alerting.alert_state add column resolved_by text")
    op.execute("alter table alerting.alert_state add column ack_source text")


def downgrade() -> None:
    op.execute("alter table alerting.alert_state drop column ack_source")
    op.execute("alter table alerting.alert_state drop column resolved_by")
    op.execute("drop index if exists alerting.outbox_due_ix")
    op.execute(
        "create index outbox_due_ix on alerting.outbox (next_attempt_at) where status = 'pending'"
    )
