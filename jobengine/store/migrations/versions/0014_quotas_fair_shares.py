"""tenant quotas and caps, fair-shared queues, and the index the fair fill reads

``tenant_quotas``: per tenant, the most jobs it may have queued (pending + scheduled; a
submission over it is refused), the most it may have claimed or running at once (a claim over
it leaves the job scheduled), and its weight in fair-shared queues. ``fair_queues``: queues
whose jobs the leader publishes round-robin across tenants, at most ``max_in_flight`` in the broker
at once. ``ix_jobs_fair_undispatched`` holds only scheduled jobs without a message, so the
fill finds each tenant's next job without reading the backlog; a job published at submission
(every queue without fair sharing) never enters it.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tenant_quotas",
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("max_queued", sa.Integer(), nullable=True),
        sa.Column("max_running", sa.Integer(), nullable=True),
        sa.Column("weight", sa.Integer(), server_default="1", nullable=False),
        sa.Column("updated_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "max_queued >= 0", name=op.f("ck_tenant_quotas_max_queued_not_negative")
        ),
        sa.CheckConstraint("max_running > 0", name=op.f("ck_tenant_quotas_max_running_positive")),
        sa.CheckConstraint("weight > 0", name=op.f("ck_tenant_quotas_weight_positive")),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_tenant_quotas")),
    )
    op.create_table(
        "fair_queues",
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("max_in_flight", sa.Integer(), server_default="8", nullable=False),
        sa.Column("updated_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("max_in_flight > 0", name=op.f("ck_fair_queues_max_in_flight_positive")),
        sa.PrimaryKeyConstraint("queue", name=op.f("pk_fair_queues")),
    )
    op.create_index(
        "ix_jobs_fair_undispatched",
        "jobs",
        ["queue", "tenant_id", sa.text("priority DESC"), "id"],
        postgresql_where=sa.text("status = 'scheduled' AND dispatched_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_fair_undispatched", table_name="jobs")
    op.drop_table("fair_queues")
    op.drop_table("tenant_quotas")
