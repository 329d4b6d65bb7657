"""backfills: sources with their watermark, backfills with their cursor, one row per slot

``backfill_sources``: a series of slots a user names (per tenant and project) on one cadence,
with its watermark (the latest slot such that it and every earlier slot completed). ``backfills``:
a range of a source's slots to create jobs for, the job template, its pacing and its cursor (the
next slot to create; NULL once every slot is created). ``backfill_slots``: one row per slot of a
source that has a job; its primary key (source, slot time) is the idempotency key that makes a
backfill run twice, or two overlapping ones, create each slot's job once.
``ix_backfill_slots_open`` holds only the slots whose job the leader has not yet seen final, so
pacing counts a backfill's jobs in flight without reading the ones it finished;
``ix_backfills_creating`` holds only the backfills the leader still creates jobs for, and
``ix_backfill_sources_behind`` only the sources whose watermark may still move.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "backfill_sources",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("project_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("cron", sa.Text(), nullable=True),
        sa.Column("interval_seconds", sa.Integer(), nullable=True),
        sa.Column("zone", sa.Text(), nullable=False),
        sa.Column("watermark", TS, nullable=True),
        sa.Column("held_at", TS, nullable=True),
        sa.Column("last_slot", TS, nullable=True),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "(cron IS NULL) <> (interval_seconds IS NULL)",
            name=op.f("ck_backfill_sources_one_cadence"),
        ),
        sa.CheckConstraint(
            "interval_seconds > 0", name=op.f("ck_backfill_sources_interval_positive")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backfill_sources")),
        sa.UniqueConstraint(
            "tenant_id", "project_id", "name", name=op.f("uq_backfill_sources_tenant_id")
        ),
    )
    op.create_index(
        "ix_backfill_sources_behind",
        "backfill_sources",
        ["id"],
        postgresql_where=sa.text("last_slot IS NOT NULL AND watermark IS DISTINCT FROM last_slot"),
    )
    op.create_table(
        "backfills",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("source_id", sa.BigInteger(), nullable=False),
        sa.Column("range_start", TS, nullable=False),
        sa.Column("range_end", TS, nullable=False),
        sa.Column("job_type", sa.Text(), nullable=False),
        sa.Column("queue", sa.Text(), nullable=True),
        sa.Column("priority", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("payload", JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("max_in_flight", sa.Integer(), nullable=True),
        sa.Column("max_per_second", sa.Float(), nullable=True),
        sa.Column("status", sa.Text(), server_default="creating", nullable=False),
        sa.Column("slots_total", sa.Integer(), nullable=False),
        sa.Column("slots_created", sa.Integer(), server_default="0", nullable=False),
        sa.Column("slots_existing", sa.Integer(), server_default="0", nullable=False),
        sa.Column("first_slot", TS, nullable=True),
        sa.Column("last_slot", TS, nullable=True),
        sa.Column("cursor", TS, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.CheckConstraint("range_end > range_start", name=op.f("ck_backfills_end_after_start")),
        sa.CheckConstraint(
            "status IN ('creating', 'created', 'cancelled')", name=op.f("ck_backfills_status")
        ),
        sa.CheckConstraint(
            "slots_created + slots_existing <= slots_total", name=op.f("ck_backfills_within_total")
        ),
        sa.CheckConstraint(
            "(status = 'creating') = (finished_at IS NULL)",
            name=op.f("ck_backfills_finished_iff_finished_at"),
        ),
        sa.CheckConstraint("max_in_flight > 0", name=op.f("ck_backfills_max_in_flight_positive")),
        sa.CheckConstraint("max_per_second > 0", name=op.f("ck_backfills_max_per_second_positive")),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["backfill_sources.id"],
            name=op.f("fk_backfills_source_id_backfill_sources"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backfills")),
    )
    op.create_index("ix_backfills_source_id_id", "backfills", ["source_id", "id"])
    op.create_index(
        "ix_backfills_creating",
        "backfills",
        ["id"],
        postgresql_where=sa.text("status = 'creating'"),
    )
    op.create_table(
        "backfill_slots",
        sa.Column("source_id", sa.BigInteger(), nullable=False),
        sa.Column("slot_at", TS, nullable=False),
        sa.Column("backfill_id", sa.BigInteger(), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["backfill_sources.id"],
            name=op.f("fk_backfill_slots_source_id_backfill_sources"),
        ),
        sa.ForeignKeyConstraint(
            ["backfill_id"],
            ["backfills.id"],
            name=op.f("fk_backfill_slots_backfill_id_backfills"),
        ),
        sa.PrimaryKeyConstraint("source_id", "slot_at", name=op.f("pk_backfill_slots")),
    )
    op.create_index(
        "ix_backfill_slots_open",
        "backfill_slots",
        ["backfill_id"],
        postgresql_where=sa.text("outcome IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_backfill_slots_open", table_name="backfill_slots")
    op.drop_table("backfill_slots")
    op.drop_index("ix_backfills_creating", table_name="backfills")
    op.drop_index("ix_backfills_source_id_id", table_name="backfills")
    op.drop_table("backfills")
    op.drop_index("ix_backfill_sources_behind", table_name="backfill_sources")
    op.drop_table("backfill_sources")
