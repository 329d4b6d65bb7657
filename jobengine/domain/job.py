"""The job entity and its history rows as the rest of the engine sees them (not ORM objects)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobengine.domain.status import JobStatus

JSONValue = Any
"""A value that survives ``json.dumps``; validated where it enters the engine."""


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    tenant_id: str
    project_id: str
    type: str
    queue: str
    priority: int
    payload: JSONValue
    status: JobStatus
    attempt: int
    retry_policy: dict[str, Any] | None
    not_before: datetime | None
    lease_owner: str | None
    lease_token: int
    lease_expires_at: datetime | None
    idempotency_key: str | None
    result: JSONValue | None
    last_error: dict[str, Any] | None
    progress: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    scheduled_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    dispatched_at: datetime | None = None
    time_limit_seconds: float | None = None
    budget_start_attempt: int = 0
    """Attempts spent before the current retry budget began (a replay may grant a fresh one)."""
    run_id: int | None = None
    """The run (DAG workflow) the job belongs to, if any; ``run_key`` names it there."""
    run_key: str | None = None
    trigger_rule: str | None = None
    """For a job of a run: what its parents' outcomes must be to release it
    (``domain.run.TriggerRule``)."""
    scheduled_for: datetime | None = None
    """The slot of the schedule or backfill that created the job (``ctx.scheduled_for``)."""
    traceparent: str | None = None
    """The W3C trace context of the span that submitted it (``jobengine.tracing``)."""

    @property
    def budget_attempt(self) -> int:
        """Which attempt of its current retry budget the job is on: what the policy counts."""
        return self.attempt - self.budget_start_attempt


@dataclass(frozen=True, slots=True)
class JobHistory:
    """One transition of one job: who moved it, when, why, and during which attempt."""

    id: int
    job_id: int
    from_status: JobStatus | None
    to_status: JobStatus
    at: datetime
    actor: str
    reason: str | None
    attempt: int
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NewJob:
    """What a producer asks for; ``jobengine.submission`` validates it before the store sees it."""

    type: str
    payload: JSONValue = field(default_factory=dict)
    tenant_id: str = "default"
    project_id: str = "default"
    queue: str = "default"
    priority: int = 0
    retry_policy: dict[str, Any] | None = None
    not_before: datetime | None = None
    idempotency_key: str | None = None
    time_limit_seconds: float | None = None
    """Overrides the type's default limit for this job."""
    scheduled_for: datetime | None = None
    """The slot a schedule or backfill creates the job for; the handler reads it as
    ``ctx.scheduled_for``."""
