"""API keys bound to a tenant and scopes; a commit-ordered cursor for the outbox

Outbox ids are identities taken before commit, so a reader of ``id > last`` can pass over a
row that commits late. Each event now records the id of the transaction that wrote it
(``txid``); a reader delivers only events whose transaction is older than its snapshot's
``xmin`` (every such transaction has ended), in ``(txid, id)`` order. That order never gains a
row behind a position already delivered, so a stream resumed from ``(txid, id)`` has no gap
and no duplicate.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


class XID8(sa.types.UserDefinedType[int]):
    """Postgres's 64-bit transaction id (no SQLAlchemy type of its own)."""

    cache_ok = True

    def get_col_spec(self, **kw: object) -> str:
        return "XID8"


SCOPES = "ARRAY['jobs:read', 'jobs:write', 'dlq:replay', 'admin']::text[]"


def upgrade() -> None:
    op.add_column(
        "job_events",
        sa.Column(
            "txid",
            XID8(),
            server_default=sa.text("pg_current_xact_id()"),
            nullable=False,
        ),
    )
    op.create_index("ix_job_events_txid_id", "job_events", ["txid", "id"])
    op.create_index("ix_job_events_tenant_id_txid_id", "job_events", ["tenant_id", "txid", "id"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("prefix", sa.Text(), nullable=False),
        sa.Column("secret_hash", sa.Text(), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(f"scopes <@ {SCOPES}", name=op.f("ck_api_keys_known_scopes")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_api_keys_secret_hash")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_index("ix_job_events_tenant_id_txid_id", table_name="job_events")
    op.drop_index("ix_job_events_txid_id", table_name="job_events")
    op.drop_column("job_events", "txid")
