"""Transactional enqueue: a job that exists only if the producer's own transaction commits.

A service that writes its own rows and wants a job to follow from them (send the e-mail for
this order) cannot publish to the broker before its commit (the worker may look for a row that
is not there yet, or that a rollback removes) and must not publish after it from memory (a crash
in between loses the job). So ``enqueue`` writes the job, its history and its outbox event with
the caller's rows, in the caller's transaction, and publishes nothing: the job is ``scheduled``
with no dispatch mark, and the fleet's leading reaper publishes it once it is committed.

Latency. The leader publishes jobs whose ``scheduled_at`` (the caller's transaction start, as
Postgres's ``now()``) is at least ``JOBENGINE_DISPATCH_GRACE_SECONDS`` (default 2 s) old, on each
tick of ``JOBENGINE_REAPER_INTERVAL_SECONDS`` (default 5 s). A job enqueued in a short
transaction therefore starts roughly grace + up to one reaper interval after commit. A caller
who wants it at once registers a publisher on its Session with ``dispatch_after_commit``; the
leader then remains only the safety net for a publish that failed or never happened.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.orm import Session

from config.settings import get_settings
from jobengine.dispatch import Publisher, publish_jobs
from jobengine.domain.job import Job, JSONValue, NewJob
from jobengine.domain.run import Run, RunSpec
from jobengine.domain.status import JobStatus
from jobengine.job_types import JobTypes
from jobengine.quotas.book import book
from jobengine.runs.service import submit_run_created
from jobengine.store.jobs_repository import DispatchRef
from jobengine.submission import submit, submit_many, validate

ENQUEUE_ACTOR = "enqueue"

_DISPATCH_KEY = "jobengine.dispatch_after_commit"
_PENDING_KEY = "jobengine.enqueued"


def _connection(target: Session | Connection) -> Connection:
    """The caller's connection, inside a transaction that only the caller ends.

    The guard's statements run on the driver connection beneath SQLAlchemy's, which bypasses
    SQLAlchemy's autobegin: a Connection the caller has not begun would later take
    ``commit()`` as a no-op and the pool would roll the job back. Beginning it here makes
    the caller's ``commit()`` commit the job with everything else.
    """
    conn = target.connection() if isinstance(target, Session) else target
    driver = conn.connection.driver_connection
    if getattr(driver, "autocommit", False):
        raise ValueError(
            "enqueue needs a connection in a transaction; this one is in autocommit mode, "
            "so the job would not be tied to the caller's commit"
        )
    if not conn.in_transaction():
        conn.begin()
    return conn


def enqueue(
    session_or_connection: Session | Connection,
    type: str,
    payload: JSONValue = None,
    *,
    tenant_id: str,
    project_id: str,
    queue: str | None = None,
    priority: int = 0,
    not_before: datetime | None = None,
    retry_policy: dict[str, Any] | None = None,
    time_limit_seconds: float | None = None,
    idempotency_key: str | None = None,
    types: JobTypes | None = None,
) -> Job:
    """Add a job to the caller's open transaction; it is committed or rolled back with it.

    Validation is ``submission.submit``'s, done before anything is written, so a refused job
    leaves the caller's transaction as it was. The type is looked up in the fleet's catalogue,
    read through the caller's own connection and cached in this process (``types`` overrides
    it), so a producer needs no handler code, only the type's name. An ``idempotency_key`` the
    tenant used before with the same request returns the job stored then; with a different
    request it raises ``DuplicateIdempotencyKey`` (the caller's transaction stays usable:
    nothing was written).
    """
    new = NewJob(
        type=type,
        payload={} if payload is None else payload,
        tenant_id=tenant_id,
        project_id=project_id,
        queue=queue or "default",
        priority=priority,
        retry_policy=retry_policy,
        not_before=not_before,
        idempotency_key=idempotency_key,
        time_limit_seconds=time_limit_seconds,
    )
    conn = _connection(session_or_connection)
    job, created = submit(
        conn,
        new,
        max_payload_bytes=get_settings().max_payload_bytes,
        types=types,
        actor=ENQUEUE_ACTOR,
    )
    if created:
        _remember(session_or_connection, conn, [job])
    return job


def enqueue_many(
    session_or_connection: Session | Connection,
    jobs: Sequence[NewJob],
    *,
    types: JobTypes | None = None,
) -> list[Job]:
    """``enqueue`` for a batch, in order: every job is validated before any is written, and
    those without idempotency keys go in one statement."""
    conn = _connection(session_or_connection)
    stored = submit_many(
        conn,
        jobs,
        max_payload_bytes=get_settings().max_payload_bytes,
        types=types,
        actor=ENQUEUE_ACTOR,
    )
    _remember(session_or_connection, conn, [job for job, created in stored if created])
    return [job for job, _ in stored]


def enqueue_run(
    session_or_connection: Session | Connection,
    spec: RunSpec,
    *,
    types: JobTypes | None = None,
) -> tuple[Run, list[Job]]:
    """Add a run (its jobs and edges) to the caller's open transaction, as ``enqueue`` adds a
    job: planned and validated before anything is written, committed or rolled back with the
    caller's rows; its roots are published by ``dispatch_after_commit`` or the leader."""
    conn = _connection(session_or_connection)
    validate_job = None
    if types is not None:
        validate_job = partial(
            validate, max_payload_bytes=get_settings().max_payload_bytes, types=types
        )
    run, jobs, created = submit_run_created(
        conn, spec, actor=ENQUEUE_ACTOR, validate_job=validate_job
    )
    if created:
        _remember(session_or_connection, conn, jobs)
    return run, jobs


def dispatch_after_commit(
    session: Session, publisher: Publisher, *, engine: Engine | None = None
) -> None:
    """Publish the jobs this Session enqueues right after each of its commits.

    Without it an enqueued job waits for the leader (see the module's note on latency). The
    publish happens after the commit, so a worker always finds the row; a rollback forgets the
    jobs. If the publish fails or the process dies first, the leader publishes them as usual,
    and a message sent by both is harmless, since the claim decides. A job enqueued inside a
    savepoint that was rolled back is still published after the outer commit; its message finds
    no job and runs nothing. ``engine`` (by default the Session's bind) records which jobs
    were handed to the broker; it must reach the same database outside the Session's
    transaction, so a Session bound to a Connection needs one.
    """
    bind = engine if engine is not None else session.get_bind()
    if not isinstance(bind, Engine):
        raise ValueError("dispatch_after_commit needs an Engine to record the dispatch")
    session.info[_DISPATCH_KEY] = (publisher, bind, get_settings().dispatch_chunk_size)
    if not event.contains(session, "after_commit", _publish_enqueued):
        event.listen(session, "after_commit", _publish_enqueued)
        event.listen(session, "after_rollback", _forget_enqueued)


def _remember(target: Session | Connection, conn: Connection, jobs: Sequence[Job]) -> None:
    """Note the jobs to publish after commit; those the leader publishes (a fair-shared
    queue, a capped tenant: ``jobengine.quotas``) are left to it."""
    if isinstance(target, Session) and _DISPATCH_KEY in target.info:
        quotas = book(conn)
        target.info.setdefault(_PENDING_KEY, []).extend(
            DispatchRef(
                id=job.id,
                type=job.type,
                queue=job.queue,
                priority=job.priority,
                attempt=job.attempt,
                time_limit_seconds=job.time_limit_seconds,
            )
            for job in jobs
            if job.status is JobStatus.SCHEDULED and not quotas.held_back(job.tenant_id, job.queue)
        )


def _publish_enqueued(session: Session) -> None:
    refs: list[DispatchRef] = session.info.pop(_PENDING_KEY, [])
    if refs:
        publisher, engine, chunk_size = session.info[_DISPATCH_KEY]
        publish_jobs(engine, publisher, refs, chunk_size=chunk_size)


def _forget_enqueued(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)
