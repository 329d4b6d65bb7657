"""dead letters: one entry per job that failed for good, reopened if a replay fails again

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column(
        "jobs",
        sa.Column("budget_start_attempt", sa.Integer(), server_default="0", nullable=False),
    )
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("project_id", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("error_code", sa.Text(), nullable=True),
        sa.Column("error_class", sa.Text(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("traceback", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("timeline", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("first_failed_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("last_failed_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("status", sa.Text(), server_default="open", nullable=False),
        sa.Column("status_changed_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("status_changed_by", sa.Text(), nullable=True),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("replay_count", sa.Integer(), server_default="0", nullable=False),
        sa.CheckConstraint(
            "status IN ('open', 'replayed', 'discarded')", name=op.f("ck_dead_letters_known_status")
        ),
        sa.CheckConstraint(
            "reason IN ('retries_exhausted', 'non_retryable', 'poison', 'lease_expired')",
            name=op.f("ck_dead_letters_known_reason"),
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_dead_letters_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
        sa.UniqueConstraint("job_id", name=op.f("uq_dead_letters_job_id")),
    )
    op.create_index("ix_dead_letters_status_id", "dead_letters", ["status", "id"])
    op.create_index("ix_dead_letters_tenant_id_id", "dead_letters", ["tenant_id", "id"])
    op.create_index(
        "ix_dead_letters_status_changed_at",
        "dead_letters",
        ["status_changed_at"],
        postgresql_where=sa.text("status IN ('replayed', 'discarded')"),
    )
    op.create_table(
        "dead_letter_replays",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("dead_letter_id", sa.BigInteger(), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("history_id", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("payload_patch", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("fresh_budget", sa.Boolean(), nullable=False),
        sa.Column("at", TS, server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dead_letter_id"],
            ["dead_letters.id"],
            name=op.f("fk_dead_letter_replays_dead_letter_id_dead_letters"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letter_replays")),
    )
    op.create_index(
        "ix_dead_letter_replays_dead_letter_id_id",
        "dead_letter_replays",
        ["dead_letter_id", "id"],
    )
    op.execute(BACKFILL)


BACKFILL = """
-- Jobs that failed for good before dead letters existed get their entry, so that every
-- `failed` job has one.
INSERT INTO dead_letters (job_id, tenant_id, project_id, type, queue, reason, error_code,
                          error_class, error_message, traceback, attempts, payload, timeline,
                          first_failed_at, last_failed_at)
SELECT j.id, j.tenant_id, j.project_id, j.type, j.queue,
       CASE j.last_error->>'code' WHEN 'POISON_MESSAGE' THEN 'poison'
                                  WHEN 'NON_RETRYABLE' THEN 'non_retryable'
                                  WHEN 'LEASE_EXPIRED' THEN 'lease_expired'
                                  ELSE 'retries_exhausted' END,
       j.last_error->>'code', j.last_error->>'class', j.last_error->>'message',
       j.last_error->>'traceback', j.attempt, j.payload,
       coalesce((SELECT jsonb_agg(jsonb_build_object(
                    'history_id', h.id, 'at', h.at, 'from_status', h.from_status,
                    'to_status', h.to_status, 'attempt', h.attempt, 'actor', h.actor,
                    'reason', h.reason, 'details', h.details) ORDER BY h.id)
                 FROM job_history AS h WHERE h.job_id = j.id), '[]'::jsonb),
       j.completed_at, j.completed_at
FROM jobs AS j
WHERE j.status = 'failed'
ORDER BY j.id
"""


def downgrade() -> None:
    op.drop_table("dead_letter_replays")
    op.drop_table("dead_letters")
    op.drop_column("jobs", "budget_start_attempt")
