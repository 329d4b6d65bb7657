"""schedules, a row per slot decision, and the slot a job was created for

``schedules``: a cadence (cron or interval, in a zone) and what each slot creates, either a
job (its columns) or a run (``run_template``, the DAG as ``POST /api/v1/runs`` takes it),
exactly one of them (``ck_schedules_job_or_run``), with the leader's bookkeeping:
``next_slot_at`` (what the tick reads due schedules by, through ``ix_schedules_due``), the
last slot decided and its job or run (the overlap policy's question), a slot held back by
``buffer_one``, and counts of slots fired and skipped.
``schedule_slots``: one row per slot decided, its primary key the guarantee that no slot is
decided twice; a fired slot names its job or its run. ``jobs.scheduled_for``: the slot a job
was created for (``ctx.scheduled_for``), a run's jobs included.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
JOB_OR_RUN = (
    "(job_type IS NOT NULL AND queue IS NOT NULL AND payload IS NOT NULL"
    " AND priority IS NOT NULL AND run_template IS NULL)"
    " OR (job_type IS NULL AND queue IS NULL AND payload IS NULL AND priority IS NULL"
    " AND retry_policy IS NULL AND time_limit_seconds IS NULL AND run_template IS NOT NULL)"
)
"""A schedule creates a job (its columns all set) or a run (its template), never both."""


def upgrade() -> None:
    op.add_column("jobs", sa.Column("scheduled_for", TS, nullable=True))
    op.create_table(
        "schedules",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("project_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("cron", sa.Text(), nullable=True),
        sa.Column("interval_seconds", sa.Integer(), nullable=True),
        sa.Column("zone", sa.Text(), server_default="UTC", nullable=False),
        sa.Column("job_type", sa.Text(), nullable=True),
        sa.Column("queue", sa.Text(), server_default="default", nullable=True),
        sa.Column("payload", postgresql.JSONB(), nullable=True),
        sa.Column("priority", sa.SmallInteger(), server_default="0", nullable=True),
        sa.Column("retry_policy", postgresql.JSONB(), nullable=True),
        sa.Column("time_limit_seconds", sa.Float(), nullable=True),
        sa.Column("run_template", postgresql.JSONB(), nullable=True),
        sa.Column("start_at", TS, nullable=True),
        sa.Column("end_at", TS, nullable=True),
        sa.Column("jitter_seconds", sa.Integer(), server_default="0", nullable=False),
        sa.Column("overlap", sa.Text(), server_default="skip", nullable=False),
        sa.Column("catch_up_seconds", sa.Integer(), server_default="300", nullable=False),
        sa.Column("paused", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("next_slot_at", TS, nullable=True),
        sa.Column("last_slot_at", TS, nullable=True),
        sa.Column("last_job_id", sa.BigInteger(), nullable=True),
        sa.Column("last_run_id", sa.BigInteger(), nullable=True),
        sa.Column("buffered_slot_at", TS, nullable=True),
        sa.Column("fired_count", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("skipped_count", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "(cron IS NULL) <> (interval_seconds IS NULL)",
            name=op.f("ck_schedules_cron_or_interval"),
        ),
        sa.CheckConstraint(JOB_OR_RUN, name=op.f("ck_schedules_job_or_run")),
        sa.CheckConstraint("interval_seconds > 0", name=op.f("ck_schedules_interval_positive")),
        sa.CheckConstraint("end_at > start_at", name=op.f("ck_schedules_ends_after_start")),
        sa.CheckConstraint("jitter_seconds >= 0", name=op.f("ck_schedules_jitter_not_negative")),
        sa.CheckConstraint("catch_up_seconds > 0", name=op.f("ck_schedules_catch_up_positive")),
        sa.CheckConstraint(
            "overlap IN ('skip', 'buffer_one', 'allow')", name=op.f("ck_schedules_overlap_known")
        ),
        sa.CheckConstraint("priority BETWEEN 0 AND 9", name=op.f("ck_schedules_priority_range")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
        sa.UniqueConstraint("tenant_id", "project_id", "name", name=op.f("uq_schedules_tenant_id")),
    )
    op.create_index(
        "ix_schedules_due",
        "schedules",
        ["next_slot_at", "id"],
        postgresql_where=sa.text("NOT paused AND next_slot_at IS NOT NULL"),
    )
    op.create_index(
        "ix_schedules_buffered",
        "schedules",
        ["id"],
        postgresql_where=sa.text("NOT paused AND buffered_slot_at IS NOT NULL"),
    )
    op.create_table(
        "schedule_slots",
        sa.Column("schedule_id", sa.BigInteger(), nullable=False),
        sa.Column("slot_at", TS, nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.Column("decided_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('fired', 'skipped', 'buffered')",
            name=op.f("ck_schedule_slots_outcome_known"),
        ),
        sa.CheckConstraint(
            "(outcome = 'fired') = (job_id IS NOT NULL OR run_id IS NOT NULL)",
            name=op.f("ck_schedule_slots_job_iff_fired"),
        ),
        sa.CheckConstraint(
            "job_id IS NULL OR run_id IS NULL", name=op.f("ck_schedule_slots_job_or_run")
        ),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["schedules.id"],
            name=op.f("fk_schedule_slots_schedule_id_schedules"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("schedule_id", "slot_at", name=op.f("pk_schedule_slots")),
    )


def downgrade() -> None:
    op.drop_table("schedule_slots")
    op.drop_index("ix_schedules_buffered", table_name="schedules")
    op.drop_index("ix_schedules_due", table_name="schedules")
    op.drop_table("schedules")
    op.drop_column("jobs", "scheduled_for")
