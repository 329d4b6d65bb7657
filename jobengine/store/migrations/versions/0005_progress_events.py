"""progress events in the outbox: events that are not transitions carry no history row

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column("job_events", "history_id", nullable=True)
    op.create_check_constraint(
        op.f("ck_job_events_transition_iff_history"),
        "job_events",
        "(type = 'job.transition') = (history_id IS NOT NULL)",
    )


def downgrade() -> None:
    op.execute("DELETE FROM job_events WHERE history_id IS NULL")
    op.drop_constraint(op.f("ck_job_events_transition_iff_history"), "job_events", type_="check")
    op.alter_column("job_events", "history_id", nullable=False)
