"""runs, their edges and artifacts: workflows planned and promoted in Postgres

A run groups jobs under one name, tenant and project; ``job_edges`` says which job waits on
which. A child waits in ``pending`` with ``parents_waiting`` counting its parents not yet
final and ``parents_failed`` those that ended failed or cancelled, so the transaction that
finalizes a parent updates each child once (O(edges)) and knows at once whether it is
released, cancelled or still waiting. ``trigger_rule`` says what a child waits for:
``all_success`` (the default), ``all_done`` (Airflow's), or ``on_failure`` (a handler that
runs only when a parent failed). A run keeps counts of its jobs by final state, so its
status is stored, not recomputed, and can be listed and filtered.

``artifacts`` describes files and blobs a handler attached to its job; the bytes live in the
storage the artifact's ``storage_key`` names (a local folder or an S3-compatible store).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
RUN_STATUS = postgresql.ENUM(
    "running", "completed", "failed", "cancelled", name="run_status", create_type=False
)


def upgrade() -> None:
    RUN_STATUS.create(op.get_bind(), checkfirst=False)
    op.create_table(
        "runs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("project_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("status", RUN_STATUS, server_default="running", nullable=False),
        sa.Column("jobs_total", sa.Integer(), server_default="0", nullable=False),
        sa.Column("jobs_completed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("jobs_failed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("jobs_cancelled", sa.Integer(), server_default="0", nullable=False),
        sa.Column("cancel_requested_at", TS, nullable=True),
        sa.Column("idempotency_key", sa.Text(), nullable=True),
        sa.Column("request_hash", sa.Text(), nullable=True),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("completed_at", TS, nullable=True),
        sa.CheckConstraint(
            "jobs_completed + jobs_failed + jobs_cancelled <= jobs_total",
            name=op.f("ck_runs_final_within_total"),
        ),
        sa.CheckConstraint(
            "(status = 'running') = (completed_at IS NULL)",
            name=op.f("ck_runs_finished_iff_completed_at"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_index("ix_runs_tenant_id_id", "runs", ["tenant_id", "id"])
    op.create_index("ix_runs_tenant_id_status_id", "runs", ["tenant_id", "status", "id"])
    op.create_index(
        "uq_runs_tenant_idempotency_key",
        "runs",
        ["tenant_id", "idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )

    op.add_column("jobs", sa.Column("run_id", sa.BigInteger(), nullable=True))
    op.add_column("jobs", sa.Column("run_key", sa.Text(), nullable=True))
    op.add_column("jobs", sa.Column("trigger_rule", sa.Text(), nullable=True))
    op.add_column(
        "jobs", sa.Column("parents_waiting", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column(
        "jobs", sa.Column("parents_failed", sa.Integer(), server_default="0", nullable=False)
    )
    op.create_foreign_key(
        op.f("fk_jobs_run_id_runs"), "jobs", "runs", ["run_id"], ["id"], ondelete="CASCADE"
    )
    op.create_check_constraint(
        op.f("ck_jobs_known_trigger_rule"),
        "jobs",
        "trigger_rule IN ('all_success', 'all_done', 'on_failure')",
    )
    op.create_check_constraint(
        op.f("ck_jobs_run_key_iff_run"), "jobs", "(run_id IS NULL) = (run_key IS NULL)"
    )
    op.create_check_constraint(
        op.f("ck_jobs_parents_counts_in_range"),
        "jobs",
        "parents_waiting >= 0 AND parents_failed >= 0",
    )
    op.create_index(
        "uq_jobs_run_id_run_key",
        "jobs",
        ["run_id", "run_key"],
        unique=True,
        postgresql_where=sa.text("run_id IS NOT NULL"),
    )

    op.create_table(
        "job_edges",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("parent_id", sa.BigInteger(), nullable=False),
        sa.Column("child_id", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("parent_id <> child_id", name=op.f("ck_job_edges_not_self")),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_job_edges_run_id_runs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["jobs.id"],
            name=op.f("fk_job_edges_parent_id_jobs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["child_id"], ["jobs.id"], name=op.f("fk_job_edges_child_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("parent_id", "child_id", name=op.f("pk_job_edges")),
    )
    op.create_index("ix_job_edges_child_id", "job_edges", ["child_id"])
    op.create_index("ix_job_edges_run_id", "job_edges", ["run_id"])

    op.create_table(
        "artifacts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("content_type", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("storage_key", sa.Text(), nullable=False),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("size_bytes >= 0", name=op.f("ck_artifacts_size_non_negative")),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_artifacts_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_artifacts_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifacts")),
        sa.UniqueConstraint("job_id", "name", name=op.f("uq_artifacts_job_id")),
    )
    op.create_index("ix_artifacts_run_id_id", "artifacts", ["run_id", "id"])


def downgrade() -> None:
    op.drop_table("artifacts")
    op.drop_table("job_edges")
    op.drop_index("uq_jobs_run_id_run_key", table_name="jobs")
    op.drop_constraint(op.f("ck_jobs_parents_counts_in_range"), "jobs", type_="check")
    op.drop_constraint(op.f("ck_jobs_run_key_iff_run"), "jobs", type_="check")
    op.drop_constraint(op.f("ck_jobs_known_trigger_rule"), "jobs", type_="check")
    op.drop_constraint(op.f("fk_jobs_run_id_runs"), "jobs", type_="foreignkey")
    for column in ("parents_failed", "parents_waiting", "trigger_rule", "run_key", "run_id"):
        op.drop_column("jobs", column)
    op.drop_table("runs")
    RUN_STATUS.drop(op.get_bind(), checkfirst=False)
