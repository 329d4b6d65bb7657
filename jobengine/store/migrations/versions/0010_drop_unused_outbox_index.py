"""drop ix_job_events_tenant_id_id: no query has read it since streams moved to (txid, id)

Every transition writes an outbox row, and each index on ``job_events`` is written with it:
five per no-op job for this one. Tenant streams read ``ix_job_events_tenant_id_txid_id``
since migration 0006; nothing orders a tenant's events by id alone.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_job_events_tenant_id_id", table_name="job_events")


def downgrade() -> None:
    op.create_index("ix_job_events_tenant_id_id", "job_events", ["tenant_id", "id"])
