"""traces and durations: a job's trace context, and wait/run time totals for /metrics

``jobs.traceparent``: the W3C trace context of the span that submitted the job
(``jobengine.tracing``). It defaults to the transaction-local setting ``jobengine.traceparent``,
so every insert of a job (one, a batch, a run) takes the submitting span's context without
naming the column, and NULL when tracing is off (nothing set).

``duration_totals``: the wait-time (due → started) and run-time (started → ended) histograms
by queue, one row per bucket: each bucket's count and the seconds it holds. Folded from the
outbox with the transition totals, so the scrape reads a few rows per queue, never history.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

TRACEPARENT_DEFAULT = "NULLIF(current_setting('jobengine.traceparent'::text, true), ''::text)"


def upgrade() -> None:
    op.add_column(
        "jobs",
        sa.Column(
            "traceparent",
            sa.Text(),
            server_default=sa.text(TRACEPARENT_DEFAULT),
            nullable=True,
        ),
    )
    op.create_table(
        "duration_totals",
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("le", sa.Float(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("seconds", sa.Float(), nullable=False, server_default="0"),
        sa.CheckConstraint(
            "kind IN ('wait', 'run')", name=op.f("ck_duration_totals_known_duration_kind")
        ),
        sa.PrimaryKeyConstraint("kind", "queue", "outcome", "le", name=op.f("pk_duration_totals")),
    )


def downgrade() -> None:
    op.drop_table("duration_totals")
    op.drop_column("jobs", "traceparent")
