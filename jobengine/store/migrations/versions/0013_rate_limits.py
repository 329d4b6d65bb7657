"""rate limits: their definitions and one token bucket (a GCRA arrival time) per limit and key

A submission that a limit applies to advances its bucket in the submitting transaction and is
born ``pending`` until its slot when the bucket is ahead of now (see ``jobengine.limits``).
A bucket whose ``tat`` has passed is the same as no bucket: idle ones may be deleted at will.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "rate_limits",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("job_type", sa.Text(), nullable=True),
        sa.Column("key_path", sa.Text(), nullable=True),
        sa.Column("rate", sa.Float(), nullable=False),
        sa.Column("per", sa.Text(), nullable=False),
        sa.Column("burst", sa.Integer(), nullable=False),
        sa.Column("units", sa.Integer(), server_default="1", nullable=False),
        sa.Column("units_path", sa.Text(), nullable=True),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "scope IN ('type', 'tenant', 'key')", name=op.f("ck_rate_limits_scope_known")
        ),
        sa.CheckConstraint(
            "per IN ('second', 'minute', 'hour')", name=op.f("ck_rate_limits_per_known")
        ),
        sa.CheckConstraint("rate > 0", name=op.f("ck_rate_limits_rate_positive")),
        sa.CheckConstraint("burst > 0", name=op.f("ck_rate_limits_burst_positive")),
        sa.CheckConstraint("units > 0", name=op.f("ck_rate_limits_units_positive")),
        sa.CheckConstraint(
            "(scope = 'key') = (key_path IS NOT NULL)", name=op.f("ck_rate_limits_key_path_iff_key")
        ),
        sa.CheckConstraint(
            "scope = 'tenant' OR job_type IS NOT NULL", name=op.f("ck_rate_limits_type_named")
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_rate_limits")),
    )
    op.create_table(
        "rate_limit_buckets",
        sa.Column("limit_name", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("tat", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["limit_name"],
            ["rate_limits.name"],
            name=op.f("fk_rate_limit_buckets_limit_name_rate_limits"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("limit_name", "key", name=op.f("pk_rate_limit_buckets")),
    )
    op.create_index("ix_rate_limit_buckets_tat", "rate_limit_buckets", ["tat"])


def downgrade() -> None:
    op.drop_index("ix_rate_limit_buckets_tat", table_name="rate_limit_buckets")
    op.drop_table("rate_limit_buckets")
    op.drop_table("rate_limits")
