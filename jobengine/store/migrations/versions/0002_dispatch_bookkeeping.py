"""dispatch bookkeeping: when a scheduled job's message was last handed to the broker

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_jobs_scheduled_dispatched_at",
        "jobs",
        ["dispatched_at", "id"],
        postgresql_where=sa.text("status = 'scheduled'"),
    )
    op.create_index(
        "ix_jobs_pending_not_before",
        "jobs",
        ["not_before", "id"],
        postgresql_where=sa.text("status = 'pending' AND not_before IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_pending_not_before", table_name="jobs")
    op.drop_index("ix_jobs_scheduled_dispatched_at", table_name="jobs")
    op.drop_column("jobs", "dispatched_at")
