"""job types as a fleet-wide catalogue, a registry of live workers, leadership as a lease row

``job_types``: what every process agrees a job type is (queue, defaults, payload JSON Schema),
upserted by the workers that handle it; ``definition_hash`` makes a change visible.
``workers``: each live worker process group with its queues and types, heartbeating
``last_seen_at``; a row not seen for a TTL is shown as gone.
``leadership``: one row per elected role; a holder keeps it by renewing ``expires_at``, so a
frozen or partitioned leader loses it after the TTL even while its connection stays open.
``api_keys`` gains the ``jobs:command`` scope for types that run commands on the workers.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

OLD_SCOPES = "ARRAY['jobs:read', 'jobs:write', 'dlq:replay', 'admin']::text[]"
NEW_SCOPES = "ARRAY['jobs:read', 'jobs:write', 'jobs:command', 'dlq:replay', 'admin']::text[]"


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "job_types",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column(
            "retry_policy",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("time_limit_seconds", sa.Float(), nullable=True),
        sa.Column("needs_network", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("runs_commands", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("payload_schema", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("definition_hash", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("declared_by", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.CheckConstraint("version > 0", name=op.f("ck_job_types_version_positive")),
        sa.CheckConstraint("time_limit_seconds > 0", name=op.f("ck_job_types_time_limit_positive")),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_job_types")),
    )
    op.create_table(
        "workers",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("queues", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("types", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=True),
        sa.Column("sealed", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("draining", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("version", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column(
            "last_seen_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_workers")),
    )
    op.create_index("ix_workers_last_seen_at", "workers", ["last_seen_at"])
    op.create_table(
        "leadership",
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("term", sa.BigInteger(), server_default="1", nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("renewed_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("role", name=op.f("pk_leadership")),
    )
    op.drop_constraint(op.f("ck_api_keys_known_scopes"), "api_keys", type_="check")
    op.create_check_constraint(
        op.f("ck_api_keys_known_scopes"), "api_keys", f"scopes <@ {NEW_SCOPES}"
    )


def downgrade() -> None:
    op.execute("UPDATE api_keys SET scopes = array_remove(scopes, 'jobs:command')")
    op.drop_constraint(op.f("ck_api_keys_known_scopes"), "api_keys", type_="check")
    op.create_check_constraint(
        op.f("ck_api_keys_known_scopes"), "api_keys", f"scopes <@ {OLD_SCOPES}"
    )
    op.drop_table("leadership")
    op.drop_index("ix_workers_last_seen_at", table_name="workers")
    op.drop_table("workers")
    op.drop_table("job_types")
