"""jobs, job_history and the job_events outbox

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STATES = ("pending", "scheduled", "claimed", "running", "completed", "failed", "cancelled")
job_status = postgresql.ENUM(*STATES, name="job_status", create_type=False)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Constraint names below are final: ``op.f`` keeps Alembic from applying the models'
    # naming convention to them a second time (``ck_jobs_ck_jobs_…``).
    postgresql.ENUM(*STATES, name="job_status").create(op.get_bind())
    op.create_table(
        "jobs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("project_id", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("queue", sa.Text(), server_default="default", nullable=False),
        sa.Column("priority", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("status", job_status, nullable=False),
        sa.Column("attempt", sa.Integer(), server_default="0", nullable=False),
        sa.Column("retry_policy", postgresql.JSONB(), nullable=True),
        sa.Column("not_before", TS, nullable=True),
        sa.Column("lease_owner", sa.Text(), nullable=True),
        sa.Column("lease_token", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("lease_expires_at", TS, nullable=True),
        sa.Column("idempotency_key", sa.Text(), nullable=True),
        sa.Column("request_hash", sa.Text(), nullable=True),
        sa.Column("result", postgresql.JSONB(), nullable=True),
        sa.Column("last_error", postgresql.JSONB(), nullable=True),
        sa.Column("progress", postgresql.JSONB(), nullable=True),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("scheduled_at", TS, nullable=True),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("completed_at", TS, nullable=True),
        sa.CheckConstraint("priority BETWEEN 0 AND 9", name=op.f("ck_jobs_priority_range")),
        sa.CheckConstraint("attempt >= 0", name=op.f("ck_jobs_attempt_non_negative")),
        sa.CheckConstraint(
            "(status IN ('completed', 'failed', 'cancelled')) = (completed_at IS NOT NULL)",
            name=op.f("ck_jobs_finished_iff_completed_at"),
        ),
        sa.CheckConstraint(
            "(status IN ('claimed', 'running')) = (lease_owner IS NOT NULL "
            "AND lease_expires_at IS NOT NULL)",
            name=op.f("ck_jobs_leased_iff_claimed_or_running"),
        ),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
    )
    op.create_index(
        "ix_jobs_runnable",
        "jobs",
        ["queue", sa.text("priority DESC"), "id"],
        postgresql_where=sa.text("status = 'scheduled'"),
    )
    op.create_index(
        "ix_jobs_lease_expiry",
        "jobs",
        ["lease_expires_at"],
        postgresql_where=sa.text("status IN ('claimed', 'running')"),
    )
    op.create_index("ix_jobs_tenant_id_id", "jobs", ["tenant_id", "id"])
    op.create_index("ix_jobs_tenant_status_id", "jobs", ["tenant_id", "status", "id"])
    op.create_index(
        "uq_jobs_tenant_idempotency_key",
        "jobs",
        ["tenant_id", "idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )

    op.create_table(
        "job_history",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("from_status", job_status, nullable=True),
        sa.Column("to_status", job_status, nullable=False),
        sa.Column("at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column(
            "details", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_job_history_job_id_jobs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_job_history"),
    )
    op.create_index("ix_job_history_job_id_id", "job_history", ["job_id", "id"])

    op.create_table(
        "job_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("history_id", sa.BigInteger(), nullable=False),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("version", sa.SmallInteger(), nullable=False),
        sa.Column("data", postgresql.JSONB(), nullable=False),
        sa.Column("occurred_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_job_events_job_id_jobs", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["history_id"],
            ["job_history.id"],
            name="fk_job_events_history_id_job_history",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_job_events"),
        sa.UniqueConstraint("history_id", name="uq_job_events_history_id"),
    )
    op.create_index("ix_job_events_job_id_id", "job_events", ["job_id", "id"])
    op.create_index("ix_job_events_tenant_id_id", "job_events", ["tenant_id", "id"])


def downgrade() -> None:
    op.drop_table("job_events")
    op.drop_table("job_history")
    op.drop_table("jobs")
    postgresql.ENUM(name="job_status").drop(op.get_bind())
