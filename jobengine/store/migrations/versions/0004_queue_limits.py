"""queue concurrency limits: how many of a queue's jobs may be claimed or running fleet-wide

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "queue_limits",
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("max_running", sa.Integer(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("max_running > 0", name=op.f("ck_queue_limits_max_running_positive")),
        sa.PrimaryKeyConstraint("queue", name=op.f("pk_queue_limits")),
    )
    op.create_index(
        "ix_jobs_queue_leased",
        "jobs",
        ["queue"],
        postgresql_where=sa.text("status IN ('claimed', 'running')"),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_queue_leased", table_name="jobs")
    op.drop_table("queue_limits")
