"""Declared schema. Migrations build the real one; a test checks the two never differ."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql.base import ischema_names
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import UserDefinedType

from jobengine.domain.status import JobStatus, RunStatus

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

job_status_enum = Enum(
    JobStatus,
    name="job_status",
    values_callable=lambda e: [m.value for m in e],
    validate_strings=True,
)

run_status_enum = Enum(
    RunStatus,
    name="run_status",
    values_callable=lambda e: [m.value for m in e],
    validate_strings=True,
)

TS = DateTime(timezone=True)


class XID8(UserDefinedType[int]):
    """Postgres's 64-bit transaction id; SQLAlchemy has no type of its own for it."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "XID8"


ischema_names["xid8"] = XID8  # so reflection (and the migrations' schema check) knows it


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


TRACEPARENT_DEFAULT = "NULLIF(current_setting('jobengine.traceparent'::text, true), ''::text)"
"""A job's ``traceparent``: the submitting span's, set for the transaction by
``jobengine.tracing.submitting``; spelled as Postgres shows it, so the schema diff sees none."""


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(Text, nullable=False)
    project_id: Mapped[str] = mapped_column(Text, nullable=False)
    type: Mapped[str] = mapped_column(Text, nullable=False)
    queue: Mapped[str] = mapped_column(Text, nullable=False, server_default="default")
    priority: Mapped[int] = mapped_column(SmallInteger, nullable=False, server_default="0")
    payload: Mapped[Any] = mapped_column(JSONB, nullable=False)
    status: Mapped[JobStatus] = mapped_column(job_status_enum, nullable=False)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    retry_policy: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    not_before: Mapped[datetime | None] = mapped_column(TS)
    lease_owner: Mapped[str | None] = mapped_column(Text)
    lease_token: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    lease_expires_at: Mapped[datetime | None] = mapped_column(TS)
    idempotency_key: Mapped[str | None] = mapped_column(Text)
    request_hash: Mapped[str | None] = mapped_column(Text)
    result: Mapped[Any | None] = mapped_column(JSONB)
    last_error: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    scheduled_at: Mapped[datetime | None] = mapped_column(TS)
    started_at: Mapped[datetime | None] = mapped_column(TS)
    completed_at: Mapped[datetime | None] = mapped_column(TS)
    dispatched_at: Mapped[datetime | None] = mapped_column(TS)
    time_limit_seconds: Mapped[float | None] = mapped_column(Float)
    """Soft limit of one attempt; the hard limit (process killed) follows a grace period."""
    budget_start_attempt: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    """The attempt count when the current retry budget began: a replay with a fresh budget
    sets it to the attempts already spent, so the RetryPolicy counts from there."""
    run_id: Mapped[int | None] = mapped_column(BigInteger)
    """No foreign key to ``runs``: see migration 0020."""
    run_key: Mapped[str | None] = mapped_column(Text)
    """The job's name within its run, unique there; edges are submitted by these keys."""
    trigger_rule: Mapped[str | None] = mapped_column(Text)
    """What a run's child waits for: ``all_success`` (None means the same), ``all_done`` or
    ``on_failure``."""
    parents_waiting: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    """Parents not yet final: the finalizing transaction of each decrements it once."""
    parents_failed: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    """Parents that ended failed or cancelled."""
    scheduled_for: Mapped[datetime | None] = mapped_column(TS)
    """The slot of the schedule (or backfill) the job was created for (``ctx.scheduled_for``)."""
    traceparent: Mapped[str | None] = mapped_column(Text, server_default=text(TRACEPARENT_DEFAULT))
    """The submitting span's W3C trace context (``jobengine.tracing``); NULL with tracing off."""

    __table_args__ = (
        CheckConstraint("priority BETWEEN 0 AND 9", name="priority_range"),
        CheckConstraint("attempt >= 0", name="attempt_non_negative"),
        CheckConstraint("time_limit_seconds > 0", name="time_limit_positive"),
        CheckConstraint(
            "(status IN ('completed', 'failed', 'cancelled')) = (completed_at IS NOT NULL)",
            name="finished_iff_completed_at",
        ),
        CheckConstraint(
            "(status IN ('claimed', 'running')) = (lease_owner IS NOT NULL "
            "AND lease_expires_at IS NOT NULL)",
            name="leased_iff_claimed_or_running",
        ),
        CheckConstraint(
            "trigger_rule IN ('all_success', 'all_done', 'on_failure')",
            name="known_trigger_rule",
        ),
        CheckConstraint("(run_id IS NULL) = (run_key IS NULL)", name="run_key_iff_run"),
        CheckConstraint(
            "parents_waiting >= 0 AND parents_failed >= 0", name="parents_counts_in_range"
        ),
        Index(
            "uq_jobs_run_id_run_key",
            "run_id",
            "run_key",
            unique=True,
            postgresql_where=text("run_id IS NOT NULL"),
        ),
        Index(
            "ix_jobs_runnable",
            "queue",
            text("priority DESC"),
            "id",
            postgresql_where=text("status = 'scheduled'"),
        ),
        Index(
            "ix_jobs_lease_expiry",
            "lease_expires_at",
            postgresql_where=text("status IN ('claimed', 'running')"),
        ),
        Index(
            "ix_jobs_scheduled_dispatched_at",
            "dispatched_at",
            "id",
            postgresql_where=text("status = 'scheduled'"),
        ),
        Index(
            "ix_jobs_pending_not_before",
            "not_before",
            "id",
            postgresql_where=text("status = 'pending' AND not_before IS NOT NULL"),
        ),
        Index(
            "ix_jobs_queue_leased",
            "queue",
            postgresql_where=text("status IN ('claimed', 'running')"),
        ),
        Index("ix_jobs_tenant_id_id", "tenant_id", "id"),
        Index("ix_jobs_tenant_status_id", "tenant_id", "status", "id"),
        Index(
            "ix_jobs_fair_undispatched",
            "queue",
            "tenant_id",
            text("priority DESC"),
            "id",
            postgresql_where=text("status = 'scheduled' AND dispatched_at IS NULL"),
        ),
        Index(
            "uq_jobs_tenant_idempotency_key",
            "tenant_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
    )


class RunRow(Base):
    """A workflow: jobs and the edges between them, with its status kept from its jobs'
    final states (counted by the transactions that finalize them)."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(Text, nullable=False)
    project_id: Mapped[str] = mapped_column(Text, nullable=False)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[RunStatus] = mapped_column(
        run_status_enum, nullable=False, server_default="running"
    )
    jobs_total: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    jobs_completed: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    jobs_failed: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    jobs_cancelled: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    cancel_requested_at: Mapped[datetime | None] = mapped_column(TS)
    idempotency_key: Mapped[str | None] = mapped_column(Text)
    request_hash: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    completed_at: Mapped[datetime | None] = mapped_column(TS)

    __table_args__ = (
        CheckConstraint(
            "jobs_completed + jobs_failed + jobs_cancelled <= jobs_total",
            name="final_within_total",
        ),
        CheckConstraint(
            "(status = 'running') = (completed_at IS NULL)", name="finished_iff_completed_at"
        ),
        Index("ix_runs_tenant_id_id", "tenant_id", "id"),
        Index("ix_runs_tenant_id_status_id", "tenant_id", "status", "id"),
        Index(
            "uq_runs_tenant_idempotency_key",
            "tenant_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
    )


class JobEdgeRow(Base):
    """``child_id`` waits on ``parent_id``; looked up by parent when one finalizes and by
    child for ``ctx.parents`` and replays. No foreign keys: only the planner and
    ``ctx.spawn`` write edges, in the transaction that writes their jobs, and retention
    deletes them with the jobs (migration 0020)."""

    __tablename__ = "job_edges"

    run_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    parent_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    child_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)

    __table_args__ = (
        CheckConstraint("parent_id <> child_id", name="not_self"),
        Index("ix_job_edges_child_id", "child_id"),
        Index("ix_job_edges_run_id", "run_id"),
    )


class ArtifactRow(Base):
    """A named file or blob a handler attached to its job; the bytes live in the storage
    ``storage_key`` names, and go with the job when retention deletes it."""

    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(Text, nullable=False)
    job_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
    )
    run_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("runs.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(Text, nullable=False)
    content_type: Mapped[str] = mapped_column(Text, nullable=False)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    sha256: Mapped[str] = mapped_column(Text, nullable=False)
    storage_key: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())

    __table_args__ = (
        CheckConstraint("size_bytes >= 0", name="size_non_negative"),
        UniqueConstraint("job_id", "name", name="uq_artifacts_job_id"),
        Index("ix_artifacts_run_id_id", "run_id", "id"),
    )


class JobHistoryRow(Base):
    """Every transition of a job. No foreign key: only the guard writes it, in the statement
    that moves the job, and retention deletes it with the job (see migration 0012)."""

    __tablename__ = "job_history"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    job_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    from_status: Mapped[JobStatus | None] = mapped_column(job_status_enum)
    to_status: Mapped[JobStatus] = mapped_column(job_status_enum, nullable=False)
    at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    actor: Mapped[str] = mapped_column(Text, nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False)
    details: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )

    __table_args__ = (Index("ix_job_history_job_id_id", "job_id", "id"),)


class JobEventRow(Base):
    """The transactional outbox: one row per history row, written in the same statement
    (no foreign keys, as for history: see migration 0012)."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    job_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    history_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True, unique=True)
    """The transition this event reports; progress events have none."""
    tenant_id: Mapped[str] = mapped_column(Text, nullable=False)
    type: Mapped[str] = mapped_column(Text, nullable=False)
    version: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    txid: Mapped[int] = mapped_column(
        XID8(), nullable=False, server_default=text("pg_current_xact_id()")
    )
    """The writing transaction: streams read in ``(txid, id)`` order below the snapshot's
    xmin, an order no late commit can insert behind (see migration 0006)."""

    __table_args__ = (
        CheckConstraint(
            "(type = 'job.transition') = (history_id IS NOT NULL)", name="transition_iff_history"
        ),
        Index("ix_job_events_job_id_id", "job_id", "id"),
        Index("ix_job_events_txid_id", "txid", "id"),
        Index("ix_job_events_tenant_id_txid_id", "tenant_id", "txid", "id"),
    )


class QueueLimitRow(Base):
    """At most ``max_running`` jobs of ``queue`` claimed or running at once, fleet-wide."""

    __tablename__ = "queue_limits"

    queue: Mapped[str] = mapped_column(Text, primary_key=True)
    max_running: Mapped[int] = mapped_column(Integer, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())

    __table_args__ = (CheckConstraint("max_running > 0", name="max_running_positive"),)


class RateLimitRow(Base):
    """A token bucket's definition: ``rate`` tokens per ``per``, holding ``burst``, applied to
    one job type (``scope`` type), to each tenant, or to each value of ``key_path`` in the
    payloads of one type; a job costs ``units``, or the integer at ``units_path``."""

    __tablename__ = "rate_limits"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    scope: Mapped[str] = mapped_column(Text, nullable=False)
    job_type: Mapped[str | None] = mapped_column(Text)
    key_path: Mapped[str | None] = mapped_column(Text)
    rate: Mapped[float] = mapped_column(Float, nullable=False)
    per: Mapped[str] = mapped_column(Text, nullable=False)
    burst: Mapped[int] = mapped_column(Integer, nullable=False)
    units: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    units_path: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())

    __table_args__ = (
        CheckConstraint("scope IN ('type', 'tenant', 'key')", name="scope_known"),
        CheckConstraint("per IN ('second', 'minute', 'hour')", name="per_known"),
        CheckConstraint("rate > 0", name="rate_positive"),
        CheckConstraint("burst > 0", name="burst_positive"),
        CheckConstraint("units > 0", name="units_positive"),
        CheckConstraint("(scope = 'key') = (key_path IS NOT NULL)", name="key_path_iff_key"),
        CheckConstraint("scope = 'tenant' OR job_type IS NOT NULL", name="type_named"),
    )


class RateLimitBucketRow(Base):
    """One bucket of a limit (its key: empty, a tenant, or a payload value) as the GCRA's
    theoretical arrival time: the bucket is full again at ``tat``."""

    __tablename__ = "rate_limit_buckets"

    limit_name: Mapped[str] = mapped_column(
        Text, ForeignKey("rate_limits.name", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    tat: Mapped[datetime] = mapped_column(TS, nullable=False, index=True)


class TenantQuotaRow(Base):
    """A tenant's quota (``max_queued``: pending + scheduled, checked at submission), its
    concurrency cap (``max_running``: claimed + running, checked at claim) and its weight in
    fair-shared queues; NULL means no limit of that kind."""

    __tablename__ = "tenant_quotas"

    tenant_id: Mapped[str] = mapped_column(Text, primary_key=True)
    max_queued: Mapped[int | None] = mapped_column(Integer)
    max_running: Mapped[int | None] = mapped_column(Integer)
    weight: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    updated_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())

    __table_args__ = (
        CheckConstraint("max_queued >= 0", name="max_queued_not_negative"),
        CheckConstraint("max_running > 0", name="max_running_positive"),
        CheckConstraint("weight > 0", name="weight_positive"),
    )


class FairQueueRow(Base):
    """A queue whose jobs the leader publishes round-robin across tenants, at most
    ``max_in_flight`` of them in the broker at once (``jobengine.quotas.fair``)."""

    __tablename__ = "fair_queues"

    queue: Mapped[str] = mapped_column(Text, primary_key=True)
    max_in_flight: Mapped[int] = mapped_column(Integer, nullable=False, server_default="8")
    updated_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())

    __table_args__ = (CheckConstraint("max_in_flight > 0", name="max_in_flight_positive"),)


class ApiKeyRow(Base):
    """A bearer key bound to one tenant and a set of scopes; only its hash is stored."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(Text, nullable=False)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    prefix: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    """The key's public beginning, shown in listings so operators can tell keys apart."""
    secret_hash: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False)
    created_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(TS)
    last_used_at: Mapped[datetime | None] = mapped_column(TS)

    __table_args__ = (
        CheckConstraint(
            "scopes <@ ARRAY['jobs:read', 'jobs:write', 'jobs:command', 'dlq:replay', "
            "'audit:read', 'admin']::text[]",
            name="known_scopes",
        ),
    )


class DeadLetterRow(Base):
    """A job that failed for good, written by the guard's statement that failed it.

    One entry per job: a replay marks it ``replayed``; if the replayed job fails for good
    again, the same entry is reopened with the new failure, so its replays stay together.
    """

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    job_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, unique=True
    )
    tenant_id: Mapped[str] = mapped_column(Text, nullable=False)
    project_id: Mapped[str] = mapped_column(Text, nullable=False)
    type: Mapped[str] = mapped_column(Text, nullable=False)
    queue: Mapped[str] = mapped_column(Text, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    error_code: Mapped[str | None] = mapped_column(Text)
    error_class: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False)
    payload: Mapped[Any] = mapped_column(JSONB, nullable=False)
    timeline: Mapped[Any] = mapped_column(JSONB, nullable=False)
    first_failed_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    last_failed_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default="open")
    status_changed_at: Mapped[datetime] = mapped_column(
        TS, nullable=False, server_default=func.now()
    )
    status_changed_by: Mapped[str | None] = mapped_column(Text)
    status_reason: Mapped[str | None] = mapped_column(Text)
    """Who discarded it and why (a replay's actor and reason are on its replay row)."""
    replay_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")

    __table_args__ = (
        CheckConstraint("status IN ('open', 'replayed', 'discarded')", name="known_status"),
        CheckConstraint(
            "reason IN ('retries_exhausted', 'non_retryable', 'poison', 'lease_expired')",
            name="known_reason",
        ),
        Index("ix_dead_letters_status_id", "status", "id"),
        Index("ix_dead_letters_tenant_id_id", "tenant_id", "id"),
        Index(
            "ix_dead_letters_status_changed_at",
            "status_changed_at",
            postgresql_where=text("status IN ('replayed', 'discarded')"),
        ),
    )


class DeadLetterReplayRow(Base):
    """One replay of a dead letter: who, when, why, with what patch; the outcome is read
    from the job's history after ``history_id``."""

    __tablename__ = "dead_letter_replays"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    dead_letter_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("dead_letters.id", ondelete="CASCADE"), nullable=False
    )
    job_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    history_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    actor: Mapped[str] = mapped_column(Text, nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False)
    payload_patch: Mapped[Any | None] = mapped_column(JSONB)
    fresh_budget: Mapped[bool] = mapped_column(Boolean, nullable=False)
    at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())

    __table_args__ = (Index("ix_dead_letter_replays_dead_letter_id_id", "dead_letter_id", "id"),)


class JobTypeRow(Base):
    """A job type as the whole fleet knows it, upserted by the workers that handle it.

    The API, the reaper, the CLI and producers read this, never handler code; a change of
    definition changes ``definition_hash`` and bumps ``version``.
    """

    __tablename__ = "job_types"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    queue: Mapped[str] = mapped_column(Text, nullable=False)
    retry_policy: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    time_limit_seconds: Mapped[float | None] = mapped_column(Float)
    needs_network: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=false())
    runs_commands: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=false())
    """Runs commands on the worker: opt-in per installation, submitted only with
    ``jobs:command``."""
    description: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    payload_schema: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    definition_hash: Mapped[str] = mapped_column(Text, nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    declared_by: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())

    __table_args__ = (
        CheckConstraint("version > 0", name="version_positive"),
        CheckConstraint("time_limit_seconds > 0", name="time_limit_positive"),
    )


class WorkerRow(Base):
    """A live worker (one Celery node) with what it consumes and handles; it heartbeats
    ``last_seen_at`` and is shown as gone once that is older than the registry's TTL."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    host: Mapped[str] = mapped_column(Text, nullable=False)
    pid: Mapped[int] = mapped_column(Integer, nullable=False)
    queues: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False)
    types: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False)
    concurrency: Mapped[int | None] = mapped_column(Integer)
    sealed: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=false())
    draining: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=false())
    version: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    last_seen_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())

    __table_args__ = (Index("ix_workers_last_seen_at", "last_seen_at"),)


class LeadershipRow(Base):
    """An elected role (the maintenance leader) held as a lease: the holder renews
    ``expires_at``; anyone may take it once it has passed, and ``term`` grows with each new
    holder, so a leader that froze past its lease can tell it was replaced."""

    __tablename__ = "leadership"

    role: Mapped[str] = mapped_column(Text, primary_key=True)
    holder: Mapped[str] = mapped_column(Text, nullable=False)
    term: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="1")
    acquired_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    renewed_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(TS, nullable=False)


FINAL_STATUS_SQL = "status IN ('completed', 'failed', 'cancelled')"

Index("ix_jobs_pending_id", JobRow.id, postgresql_where=text("status = 'pending'"))
"""Counts pending jobs for ``/metrics`` without reading the rest of ``jobs``: only jobs born
with a start time enter ``pending``, so it costs the hot path almost nothing."""

Index(
    "ix_jobs_final_completed_at",
    JobRow.completed_at,
    JobRow.id,
    postgresql_where=text(FINAL_STATUS_SQL),
)
"""Serves retention: final jobs oldest first (River keeps the same index for its cleaner)."""

# --- provenance exports (jobengine.audit.export; migration 0018) ---

Index("ix_jobs_run_id_id", JobRow.run_id, JobRow.id, postgresql_where=text("run_id IS NOT NULL"))
"""A run's jobs in id order, the pages a provenance export of one run reads."""


class TransitionTotalRow(Base):
    """Transitions by step, folded from the outbox in commit order (see
    ``store.metrics_repository``); what ``/metrics`` reports instead of counting history."""

    __tablename__ = "transition_totals"

    from_status: Mapped[str] = mapped_column(Text, primary_key=True)
    """The state left; empty for a job's creation."""
    to_status: Mapped[str] = mapped_column(Text, primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    lease_expired: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    """Of ``n``, the steps the reaper took because a lease expired."""


class DurationTotalRow(Base):
    """Wait and run time histograms by queue, one row per bucket (``le``, +Inf included),
    folded from the outbox with the transition totals (``store.metrics_repository``)."""

    __tablename__ = "duration_totals"

    kind: Mapped[str] = mapped_column(Text, primary_key=True)
    """``wait`` (due → started) or ``run`` (started → ended)."""
    queue: Mapped[str] = mapped_column(Text, primary_key=True)
    outcome: Mapped[str] = mapped_column(Text, primary_key=True)
    """The state a run ended in (completed, failed, cancelled); empty for a wait."""
    le: Mapped[float] = mapped_column(Float, primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    seconds: Mapped[float] = mapped_column(Float, nullable=False, server_default="0")

    __table_args__ = (CheckConstraint("kind IN ('wait', 'run')", name="known_duration_kind"),)


class TransitionTotalsCursorRow(Base):
    """The one row saying how far the totals have read the outbox, as a ``(txid, id)``
    position; a fold locks it, so two folds never count one event twice."""

    __tablename__ = "transition_totals_cursor"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    txid: Mapped[int] = mapped_column(XID8(), nullable=False)
    event_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    folded_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())

    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)


class PrunedJobsRow(Base):
    """Final jobs retention deleted, by the state they rested in: a final state's gauge is
    its entries minus its exits minus these."""

    __tablename__ = "pruned_jobs"

    status: Mapped[str] = mapped_column(Text, primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    pruned_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())


# ---- schedules (issue 15) ----


SCHEDULE_JOB_OR_RUN = (
    "(job_type IS NOT NULL AND queue IS NOT NULL AND payload IS NOT NULL"
    " AND priority IS NOT NULL AND run_template IS NULL)"
    " OR (job_type IS NULL AND queue IS NULL AND payload IS NULL AND priority IS NULL"
    " AND retry_policy IS NULL AND time_limit_seconds IS NULL AND run_template IS NOT NULL)"
)


class ScheduleRow(Base):
    """A cadence and the job, or the run, each of its slots creates, with the leader's
    bookkeeping (see ``jobengine.maintenance.scheduler``)."""

    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(Text, nullable=False)
    project_id: Mapped[str] = mapped_column(Text, nullable=False)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    cron: Mapped[str | None] = mapped_column(Text)
    interval_seconds: Mapped[int | None] = mapped_column(Integer)
    zone: Mapped[str] = mapped_column(Text, nullable=False, server_default="UTC")
    job_type: Mapped[str | None] = mapped_column(Text)
    """The job each slot creates, with the five columns after it; all NULL for a run."""
    queue: Mapped[str | None] = mapped_column(Text, server_default="default")
    payload: Mapped[Any] = mapped_column(JSONB, nullable=True)
    priority: Mapped[int | None] = mapped_column(SmallInteger, server_default="0")
    retry_policy: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    time_limit_seconds: Mapped[float | None] = mapped_column(Float)
    run_template: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    """Instead of a job: the run each slot creates (``schedules.definition.RunTemplate``)."""
    start_at: Mapped[datetime | None] = mapped_column(TS)
    end_at: Mapped[datetime | None] = mapped_column(TS)
    jitter_seconds: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    overlap: Mapped[str] = mapped_column(Text, nullable=False, server_default="skip")
    catch_up_seconds: Mapped[int] = mapped_column(Integer, nullable=False, server_default="300")
    paused: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=false())
    next_slot_at: Mapped[datetime | None] = mapped_column(TS)
    """The first slot not yet decided; None once the schedule has no slot left."""
    last_slot_at: Mapped[datetime | None] = mapped_column(TS)
    last_job_id: Mapped[int | None] = mapped_column(BigInteger)
    """The job of the last slot fired: while it is not final, ``skip`` and ``buffer_one`` hold
    the slots that come due. No foreign key: retention may delete the job, which then counts
    as final."""
    last_run_id: Mapped[int | None] = mapped_column(BigInteger)
    """The run of the last slot fired, asked the same question (final: completed, failed or
    cancelled)."""
    buffered_slot_at: Mapped[datetime | None] = mapped_column(TS)
    """The slot ``buffer_one`` holds until ``last_job_id`` and ``last_run_id`` are final."""
    fired_count: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    skipped_count: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    created_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())

    __table_args__ = (
        CheckConstraint("(cron IS NULL) <> (interval_seconds IS NULL)", name="cron_or_interval"),
        CheckConstraint(SCHEDULE_JOB_OR_RUN, name="job_or_run"),
        CheckConstraint("interval_seconds > 0", name="interval_positive"),
        CheckConstraint("end_at > start_at", name="ends_after_start"),
        CheckConstraint("jitter_seconds >= 0", name="jitter_not_negative"),
        CheckConstraint("catch_up_seconds > 0", name="catch_up_positive"),
        CheckConstraint("overlap IN ('skip', 'buffer_one', 'allow')", name="overlap_known"),
        CheckConstraint("priority BETWEEN 0 AND 9", name="priority_range"),
        UniqueConstraint("tenant_id", "project_id", "name"),
        Index(
            "ix_schedules_due",
            "next_slot_at",
            "id",
            postgresql_where=text("NOT paused AND next_slot_at IS NOT NULL"),
        ),
        Index(
            "ix_schedules_buffered",
            "id",
            postgresql_where=text("NOT paused AND buffered_slot_at IS NOT NULL"),
        ),
    )


class ScheduleSlotRow(Base):
    """One slot of a schedule as the leader decided it: fired (with its job or its run),
    skipped (and why), or buffered; its primary key is what makes every slot decided once."""

    __tablename__ = "schedule_slots"

    schedule_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("schedules.id", ondelete="CASCADE"), primary_key=True
    )
    slot_at: Mapped[datetime] = mapped_column(TS, primary_key=True)
    outcome: Mapped[str] = mapped_column(Text, nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    run_id: Mapped[int | None] = mapped_column(BigInteger)
    decided_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())

    __table_args__ = (
        CheckConstraint("outcome IN ('fired', 'skipped', 'buffered')", name="outcome_known"),
        CheckConstraint(
            "(outcome = 'fired') = (job_id IS NOT NULL OR run_id IS NOT NULL)",
            name="job_iff_fired",
        ),
        CheckConstraint("job_id IS NULL OR run_id IS NULL", name="job_or_run"),
    )


# --- backfills (jobengine.backfills; migration 0016) ---


class BackfillSourceRow(Base):
    """A series of slots a user names, on one cadence, with its watermark: the latest slot
    such that it and every earlier slot of the source completed (``backfills.watermark``)."""

    __tablename__ = "backfill_sources"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(Text, nullable=False)
    project_id: Mapped[str] = mapped_column(Text, nullable=False)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    cron: Mapped[str | None] = mapped_column(Text)
    interval_seconds: Mapped[int | None] = mapped_column(Integer)
    zone: Mapped[str] = mapped_column(Text, nullable=False)
    watermark: Mapped[datetime | None] = mapped_column(TS)
    held_at: Mapped[datetime | None] = mapped_column(TS)
    """The first slot after the watermark that holds it (not completed, or missing)."""
    last_slot: Mapped[datetime | None] = mapped_column(TS)
    created_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())

    __table_args__ = (
        CheckConstraint("(cron IS NULL) <> (interval_seconds IS NULL)", name="one_cadence"),
        CheckConstraint("interval_seconds > 0", name="interval_positive"),
        UniqueConstraint("tenant_id", "project_id", "name"),
        Index(
            "ix_backfill_sources_behind",
            "id",
            postgresql_where=text("last_slot IS NOT NULL AND watermark IS DISTINCT FROM last_slot"),
        ),
    )


class BackfillRow(Base):
    """A range of a source's slots to create jobs for, paced, from ``cursor`` (the next slot
    to create; NULL once all are created) by the leader (``maintenance.backfiller``)."""

    __tablename__ = "backfills"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    source_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("backfill_sources.id"), nullable=False
    )
    range_start: Mapped[datetime] = mapped_column(TS, nullable=False)
    range_end: Mapped[datetime] = mapped_column(TS, nullable=False)
    job_type: Mapped[str] = mapped_column(Text, nullable=False)
    queue: Mapped[str | None] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(SmallInteger, nullable=False, server_default="0")
    payload: Mapped[Any] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    max_in_flight: Mapped[int | None] = mapped_column(Integer)
    max_per_second: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default="creating")
    slots_total: Mapped[int] = mapped_column(Integer, nullable=False)
    slots_created: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    slots_existing: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    first_slot: Mapped[datetime | None] = mapped_column(TS)
    last_slot: Mapped[datetime | None] = mapped_column(TS)
    cursor: Mapped[datetime | None] = mapped_column(TS)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(TS)

    __table_args__ = (
        CheckConstraint("range_end > range_start", name="end_after_start"),
        CheckConstraint("status IN ('creating', 'created', 'cancelled')", name="status"),
        CheckConstraint("slots_created + slots_existing <= slots_total", name="within_total"),
        CheckConstraint(
            "(status = 'creating') = (finished_at IS NULL)", name="finished_iff_finished_at"
        ),
        CheckConstraint("max_in_flight > 0", name="max_in_flight_positive"),
        CheckConstraint("max_per_second > 0", name="max_per_second_positive"),
        Index("ix_backfills_source_id_id", "source_id", "id"),
        Index("ix_backfills_creating", "id", postgresql_where=text("status = 'creating'")),
    )


class BackfillSlotRow(Base):
    """A slot of a source that has its job; the primary key (source, slot time) is the
    idempotency key that creates each slot's job once. ``outcome`` is set once the leader
    saw the job final, so ``ix_backfill_slots_open`` holds only the jobs pacing counts."""

    __tablename__ = "backfill_slots"

    source_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("backfill_sources.id"), primary_key=True
    )
    slot_at: Mapped[datetime] = mapped_column(TS, primary_key=True)
    backfill_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("backfills.id"), nullable=False)
    job_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    outcome: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_backfill_slots_open", "backfill_id", postgresql_where=text("outcome IS NULL")),
    )


# --- audit log (jobengine.audit; migration 0017) ---


class AuditEntryRow(Base):
    """One operator or administrative act, done or refused, in the order ``id`` gives.

    Append-only: the migration's trigger refuses UPDATE and TRUNCATE, and DELETE outside the
    audit retention task (``SET LOCAL jobengine.audit_retention = 'on'``). ``tenant`` NULL is a
    fleet-wide act; ``reason`` is the error code of a refusal; ``detail`` never holds a secret.
    """

    __tablename__ = "audit_entries"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    actor: Mapped[str] = mapped_column(Text, nullable=False)
    surface: Mapped[str] = mapped_column(Text, nullable=False)
    action: Mapped[str] = mapped_column(Text, nullable=False)
    object_kind: Mapped[str] = mapped_column(Text, nullable=False)
    object_id: Mapped[str | None] = mapped_column(Text)
    tenant: Mapped[str | None] = mapped_column(Text)
    client_addr: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(Text, nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[Any] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))

    __table_args__ = (
        CheckConstraint("outcome IN ('done', 'refused')", name="known_outcome"),
        CheckConstraint(
            "surface IN ('rest', 'cli', 'console', 'flower', 'worker', 'system')",
            name="known_surface",
        ),
        CheckConstraint("(outcome = 'refused') = (reason IS NOT NULL)", name="reason_iff_refused"),
        Index("ix_audit_entries_tenant_id", "tenant", "id"),
        Index("ix_audit_entries_actor_id", "actor", "id"),
        Index("ix_audit_entries_action_id", "action", "id"),
        Index("ix_audit_entries_object_kind_object_id_id", "object_kind", "object_id", "id"),
        Index("ix_audit_entries_at", "at"),
    )


class AuditEntryJobRow(Base):
    """A job an audit entry touched; keyed by job first so an export finds a job's entries by
    index. No foreign key to ``jobs``: retention deletes jobs, the audit outlives them."""

    __tablename__ = "audit_entry_jobs"

    entry_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("audit_entries.id", ondelete="CASCADE"), nullable=False
    )
    job_id: Mapped[int] = mapped_column(BigInteger, nullable=False)

    __table_args__ = (
        PrimaryKeyConstraint("job_id", "entry_id"),
        Index("ix_audit_entry_jobs_entry_id", "entry_id", "job_id"),
    )
