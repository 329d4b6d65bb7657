"""Submitting and cancelling runs from a process that owns its transactions (the API, the
CLI, a producer): commit first, then talk to the broker, never the other way round."""

from __future__ import annotations

from sqlalchemy import Engine

from jobengine.audit import Origin, record
from jobengine.cancellation import TaskRevoker
from jobengine.dispatch import Publisher, publish_jobs, task_id_for
from jobengine.domain.job import Job
from jobengine.domain.run import Run, RunSpec
from jobengine.producer import dispatch_ref
from jobengine.runs.service import JobValidator, cancel_run, revocable, submit_run_created
from jobengine.store.database import transaction


def submit_run_now(
    engine: Engine,
    publisher: Publisher,
    spec: RunSpec,
    *,
    actor: str,
    chunk_size: int = 20,
    validate_job: JobValidator | None = None,
) -> tuple[Run, list[Job]]:
    """Store the run in one transaction, then publish its roots. A broker that is down
    loses nothing: the roots are committed ``scheduled`` and the leader publishes them."""
    with transaction(engine) as conn:
        run, jobs, created = submit_run_created(
            conn, spec, actor=actor, dispatching=True, validate_job=validate_job
        )
    if created:  # roots the leader publishes in their turn were born unmarked
        roots = [dispatch_ref(j) for j in jobs if j.dispatched_at is not None]
        publish_jobs(engine, publisher, roots, premarked=True, chunk_size=chunk_size)
    return run, jobs


def cancel_run_now(
    engine: Engine,
    run_id: int,
    *,
    tenant_id: str | None,
    actor: str,
    reason: str | None = None,
    revoker: TaskRevoker | None = None,
    origin: Origin | None = None,
) -> tuple[Run, list[Job], list[str]]:
    """Cancel the run in one transaction, then revoke the tasks of the jobs whose attempt
    had started; returns the run, the jobs cancelled and the task ids revoked. ``origin``
    files the act in the audit log, in that transaction."""
    with transaction(engine) as conn:
        run, cancelled = cancel_run(conn, run_id, tenant_id=tenant_id, actor=actor, reason=reason)
        if origin is not None:
            record(
                conn,
                origin,
                "run.cancel",
                object_id=run_id,
                tenant=run.tenant_id,
                detail={"reason": reason, "changed": True, "jobsCancelled": len(cancelled)},
                job_ids=[job.id for job in cancelled],
            )
    revoked: list[str] = []
    if revoker is not None:
        for job in revocable(cancelled):
            task_id = task_id_for(job.id, job.attempt)
            revoker.revoke(task_id, terminate=True, signal="SIGTERM")
            revoked.append(task_id)
    return run, cancelled, revoked
