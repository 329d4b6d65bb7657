"""Cancelling a job: Postgres first, then the broker.

The guard moves the job to ``cancelled``; from then on its message, when it arrives, claims
nothing, and a late outcome of a running attempt is refused by the fence. For a job that is
running, the worker is also told to stop: its Celery task is revoked with termination, and
the handler sees ``ctx.cancelled`` at its next heartbeat either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Engine

from jobengine import guard
from jobengine.audit import Origin, record
from jobengine.dispatch import task_id_for
from jobengine.domain.job import Job
from jobengine.domain.status import JobStatus
from jobengine.errors import InvalidTransition, StoreError
from jobengine.store.database import transaction
from jobengine.store.jobs_repository import JobsRepository


class JobAlreadyFinal(StoreError):
    code = "JOB_ALREADY_FINAL"
    hint = "Only pending, scheduled, claimed or running jobs can be cancelled."

    def __init__(self, job: Job) -> None:
        super().__init__(f"job {job.id} is already {job.status.value}; nothing to cancel")
        self.job = job


class TaskRevoker(Protocol):
    def revoke(self, task_id: str, *, terminate: bool = False, signal: str = "SIGTERM") -> None: ...


@dataclass(frozen=True, slots=True)
class Cancelled:
    job: Job
    changed: bool
    """False when the job was already cancelled: cancelling twice is harmless."""
    revoked_task: str | None


def cancel_job(
    engine: Engine,
    job_id: int,
    *,
    actor: str,
    reason: str = "cancelled by request",
    revoker: TaskRevoker | None = None,
    origin: Origin | None = None,
    audit_unchanged: bool = True,
) -> Cancelled:
    """``origin``, when given, files the act in the audit log in the cancel's transaction
    (a cancel of a job already cancelled too, with ``changed`` false, unless
    ``audit_unchanged`` is off: a revoke echoing a cancel filed where it was asked)."""

    def audited(job: Job, changed: bool, was: JobStatus) -> None:
        if origin is not None and (changed or audit_unchanged):
            detail = {"from": was.value, "reason": reason, "changed": changed}
            record(
                conn,
                origin,
                "job.cancel",
                object_id=job.id,
                tenant=job.tenant_id,
                detail=detail,
                job_ids=[job.id],
            )

    with transaction(engine) as conn:
        before = JobsRepository(conn).get(job_id)
        if before.status is JobStatus.CANCELLED:
            audited(before, False, before.status)
            return Cancelled(job=before, changed=False, revoked_task=None)
        try:
            after = guard.transition(conn, job_id, JobStatus.CANCELLED, actor=actor, reason=reason)
        except InvalidTransition:
            current = JobsRepository(conn).get(job_id)
            if current.status is JobStatus.CANCELLED:
                audited(current, False, current.status)
                return Cancelled(job=current, changed=False, revoked_task=None)
            raise JobAlreadyFinal(current) from None
        audited(after.job, True, after.from_status)
    revoked = None
    if after.from_status in (JobStatus.CLAIMED, JobStatus.RUNNING) and revoker is not None:
        revoked = task_id_for(job_id, after.job.attempt)
        revoker.revoke(revoked, terminate=True, signal="SIGTERM")
    return Cancelled(job=after.job, changed=True, revoked_task=revoked)
