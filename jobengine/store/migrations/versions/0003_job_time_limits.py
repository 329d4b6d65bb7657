"""per-job time limit (seconds), resolved at submission from the type's default or the job's own

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("time_limit_seconds", sa.Float(), nullable=True))
    op.create_check_constraint(
        op.f("ck_jobs_time_limit_positive"), "jobs", "time_limit_seconds > 0"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_jobs_time_limit_positive"), "jobs", type_="check")
    op.drop_column("jobs", "time_limit_seconds")
