"""Submitting from Python: store the job, commit, then publish (never the other way round)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine

from jobengine.dispatch import Publisher, publish_jobs
from jobengine.domain.job import Job, NewJob
from jobengine.domain.status import JobStatus
from jobengine.job_types import JobTypes
from jobengine.store.database import transaction
from jobengine.store.jobs_repository import DispatchRef
from jobengine.submission import submit_many


def dispatch_ref(job: Job) -> DispatchRef:
    return DispatchRef(
        id=job.id,
        type=job.type,
        queue=job.queue,
        priority=job.priority,
        attempt=job.attempt,
        time_limit_seconds=job.time_limit_seconds,
    )


def submit_jobs(
    engine: Engine,
    publisher: Publisher,
    jobs: Sequence[NewJob],
    *,
    max_payload_bytes: int = 256 * 1024,
    types: JobTypes | None = None,
    actor: str = "producer",
    chunk_size: int = 20,
    sealed: bool | None = None,
    commands_enabled: bool | None = None,
) -> list[Job]:
    """Store ``jobs`` in one transaction, then publish the new scheduled ones.

    If the broker is down the call still succeeds: the jobs are committed as ``scheduled`` and
    the leader publishes them when the broker is back. If this process dies between commit and
    publish, the leader re-publishes them once ``redispatch_after_seconds`` have passed.
    """
    with transaction(engine) as conn:
        stored = submit_many(
            conn,
            jobs,
            max_payload_bytes=max_payload_bytes,
            types=types,
            actor=actor,
            dispatching=True,
            sealed=sealed,
            commands_enabled=commands_enabled,
        )
    fresh = [
        dispatch_ref(job)
        for job, created in stored
        if created and job.status is JobStatus.SCHEDULED and job.dispatched_at is not None
    ]
    publish_jobs(engine, publisher, fresh, premarked=True, chunk_size=chunk_size)
    return [job for job, _ in stored]
