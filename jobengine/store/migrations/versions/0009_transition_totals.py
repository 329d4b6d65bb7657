"""transition totals folded from the outbox, retention's bookkeeping and indexes

``/metrics`` used to count all of ``job_history`` at every scrape, a cost that grew with
history. The totals by step are now folded from the commit-ordered outbox past a cursor (see
``store.metrics_repository``); they start from what the database already holds, counted here
by the same visibility rule a fold uses, so an upgraded database keeps its counts and the
first fold counts exactly the events this migration could not see. ``pruned_jobs`` records
the final jobs retention deleted, so a final state's gauge need not count ``jobs``. Two
partial indexes: pending jobs (for the gauge) and final jobs by completion (for retention).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


class XID8(sa.types.UserDefinedType[int]):
    """Postgres's 64-bit transaction id (no SQLAlchemy type of its own)."""

    cache_ok = True

    def get_col_spec(self, **kw: object) -> str:
        return "XID8"


TS = sa.DateTime(timezone=True)

# One statement, so one snapshot: the totals and the cursor see the same events.
INITIAL_TOTALS = """
WITH horizon AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin),
seen AS (
    SELECT e.txid, e.id, e.history_id FROM job_events AS e, horizon
    WHERE e.txid < horizon.xmin
),
totals AS (
    INSERT INTO transition_totals (from_status, to_status, n, lease_expired)
    SELECT coalesce(h.from_status::text, ''), h.to_status::text, count(*),
           count(*) FILTER (WHERE h.reason IN ('lease_expired', 'lease_expired_before_start'))
    FROM seen JOIN job_history AS h ON h.id = seen.history_id
    GROUP BY 1, 2
    RETURNING 1
)
INSERT INTO transition_totals_cursor (id, txid, event_id)
SELECT 1, coalesce(last.txid, '0'::xid8), coalesce(last.id, 0)
FROM (SELECT NULL) AS one
LEFT JOIN (SELECT txid, id FROM seen ORDER BY txid DESC, id DESC LIMIT 1) AS last ON true
"""


def upgrade() -> None:
    op.create_table(
        "transition_totals",
        sa.Column("from_status", sa.Text(), nullable=False),
        sa.Column("to_status", sa.Text(), nullable=False),
        sa.Column("n", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("lease_expired", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("from_status", "to_status", name=op.f("pk_transition_totals")),
    )
    op.create_table(
        "transition_totals_cursor",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("txid", XID8(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("folded_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_transition_totals_cursor_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transition_totals_cursor")),
    )
    op.create_table(
        "pruned_jobs",
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("n", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("pruned_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("status", name=op.f("pk_pruned_jobs")),
    )
    op.create_index(
        "ix_jobs_pending_id", "jobs", ["id"], postgresql_where=sa.text("status = 'pending'")
    )
    op.create_index(
        "ix_jobs_final_completed_at",
        "jobs",
        ["completed_at", "id"],
        postgresql_where=sa.text("status IN ('completed', 'failed', 'cancelled')"),
    )
    op.execute(INITIAL_TOTALS)


def downgrade() -> None:
    op.drop_index("ix_jobs_final_completed_at", table_name="jobs")
    op.drop_index("ix_jobs_pending_id", table_name="jobs")
    op.drop_table("pruned_jobs")
    op.drop_table("transition_totals_cursor")
    op.drop_table("transition_totals")
