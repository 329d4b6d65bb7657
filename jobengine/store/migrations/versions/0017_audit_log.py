"""audit log: one append-only row per operator or administrative act, and the jobs it touched

``audit_entries``: who (``actor``), through which surface, did what (``action``) to which
object, for which tenant (NULL = fleet-wide), from where, with what outcome; ``id`` is the
stable order an export chains. ``audit_entry_jobs`` names every job an entry touched (one
bulk replay of 100 dead letters is one entry with 100 rows) so "the entries that touched
these jobs" is an index scan; it is no foreign key to ``jobs`` because retention deletes jobs
and the audit outlives them.

Append-only in the database, not by convention: a trigger refuses every UPDATE and TRUNCATE
of both tables, and every DELETE unless the transaction ran ``SET LOCAL
jobengine.audit_retention = 'on'``, which only the audit retention task does.

The scope ``audit:read`` lets a tenant key read its own tenant's entries.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)

OLD_SCOPES = "ARRAY['jobs:read', 'jobs:write', 'jobs:command', 'dlq:replay', 'admin']::text[]"
NEW_SCOPES = (
    "ARRAY['jobs:read', 'jobs:write', 'jobs:command', 'dlq:replay', 'audit:read', 'admin']::text[]"
)

APPEND_ONLY = """
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE'
       AND coalesce(current_setting('jobengine.audit_retention', true), '') = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Audit rows are never changed; only the audit retention task '
                     '(JOBENGINE_AUDIT_RETENTION_DAYS) deletes old ones.';
END
$$
"""

TABLES = ("audit_entries", "audit_entry_jobs")


def upgrade() -> None:
    op.create_table(
        "audit_entries",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("surface", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("object_kind", sa.Text(), nullable=False),
        sa.Column("object_id", sa.Text(), nullable=True),
        sa.Column("tenant", sa.Text(), nullable=True),
        sa.Column("client_addr", sa.Text(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("detail", JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('done', 'refused')", name=op.f("ck_audit_entries_known_outcome")
        ),
        sa.CheckConstraint(
            "surface IN ('rest', 'cli', 'console', 'flower', 'worker', 'system')",
            name=op.f("ck_audit_entries_known_surface"),
        ),
        sa.CheckConstraint(
            "(outcome = 'refused') = (reason IS NOT NULL)",
            name=op.f("ck_audit_entries_reason_iff_refused"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_entries")),
    )
    op.create_index("ix_audit_entries_tenant_id", "audit_entries", ["tenant", "id"])
    op.create_index("ix_audit_entries_actor_id", "audit_entries", ["actor", "id"])
    op.create_index("ix_audit_entries_action_id", "audit_entries", ["action", "id"])
    op.create_index(
        "ix_audit_entries_object_kind_object_id_id",
        "audit_entries",
        ["object_kind", "object_id", "id"],
    )
    op.create_index("ix_audit_entries_at", "audit_entries", ["at"])
    op.create_table(
        "audit_entry_jobs",
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["audit_entries.id"],
            name=op.f("fk_audit_entry_jobs_entry_id_audit_entries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", "entry_id", name=op.f("pk_audit_entry_jobs")),
    )
    op.create_index("ix_audit_entry_jobs_entry_id", "audit_entry_jobs", ["entry_id", "job_id"])
    op.execute(APPEND_ONLY)
    for table in TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION audit_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()"
        )
    op.drop_constraint(op.f("ck_api_keys_known_scopes"), "api_keys", type_="check")
    op.create_check_constraint(
        op.f("ck_api_keys_known_scopes"), "api_keys", f"scopes <@ {NEW_SCOPES}"
    )


def downgrade() -> None:
    op.execute("UPDATE api_keys SET scopes = array_remove(scopes, 'audit:read')")
    op.drop_constraint(op.f("ck_api_keys_known_scopes"), "api_keys", type_="check")
    op.create_check_constraint(
        op.f("ck_api_keys_known_scopes"), "api_keys", f"scopes <@ {OLD_SCOPES}"
    )
    op.drop_index("ix_audit_entry_jobs_entry_id", table_name="audit_entry_jobs")
    op.drop_table("audit_entry_jobs")
    for name in ("at", "object_kind_object_id_id", "action_id", "actor_id", "tenant_id"):
        op.drop_index(f"ix_audit_entries_{name}", table_name="audit_entries")
    op.drop_table("audit_entries")
    op.execute("DROP FUNCTION audit_append_only()")
