"""jobs by run in id order: the index a provenance export of one run pages through

``ix_jobs_run_id_id`` holds only jobs of runs (partial), so jobs outside runs cost it
nothing; ``uq_jobs_run_id_run_key`` finds a run's jobs too, but by key, so a page of them in
id order would read and sort the whole run for every page.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_jobs_run_id_id",
        "jobs",
        ["run_id", "id"],
        postgresql_where=sa.text("run_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_run_id_id", table_name="jobs")
