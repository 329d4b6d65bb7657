"""``/api/v1/jobs``: create (one or a batch), read, list, cancel, history.

Handlers are plain functions (FastAPI runs them in its thread pool) because the store is
synchronous SQLAlchemy; each request is one transaction, committed before anything is published.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import AwareDatetime

from jobengine.api import metrics
from jobengine.api.auth import acting_tenant, check_scope, require, sees_tracebacks, visible
from jobengine.api.cursors import decode_cursor, encode_cursor
from jobengine.api.keys import JOBS_COMMAND, JOBS_READ, JOBS_WRITE, ApiKey
from jobengine.api.schemas import (
    ERROR_RESPONSES,
    QUOTA_EXCEEDED_RESPONSES,
    BatchCreate,
    ErrorOut,
    HistoryItem,
    HistoryList,
    IdempotencyKey,
    JobBatch,
    JobCreate,
    JobList,
    JobOut,
    Name,
)
from jobengine.api.state import ApiState, api_state
from jobengine.audit.rest import key_actor, origin_of
from jobengine.cancellation import cancel_job
from jobengine.dispatch import publish_jobs
from jobengine.domain.job import Job, NewJob
from jobengine.domain.status import JobStatus
from jobengine.producer import dispatch_ref
from jobengine.store.database import transaction
from jobengine.store.history_repository import JobHistoryRepository
from jobengine.store.jobs_repository import JobFilter, JobsRepository
from jobengine.submission import refuse_disabled_command_type, submit_many

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"], responses=ERROR_RESPONSES)

JobId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The job's id.")]
TenantHeader = Annotated[
    str,
    Header(
        alias="X-Tenant-Id",
        min_length=1,
        max_length=200,
        description="The tenant the jobs belong to; must be the key's own unless it is admin.",
    ),
]


def actor(key: ApiKey) -> str:
    """History names the key that asked, as the audit log does (``audit.rest.key_actor``)."""
    return key_actor(key)


def new_job(body: JobCreate, tenant: str, idempotency_key: str | None) -> NewJob:
    return NewJob(
        type=body.type,
        payload=body.payload,
        tenant_id=tenant,
        project_id=body.project_id,
        queue=body.queue,
        priority=body.priority,
        retry_policy=body.retry_policy.to_engine() if body.retry_policy else None,
        not_before=body.not_before,
        idempotency_key=idempotency_key,
        time_limit_seconds=body.time_limit_seconds,
    )


def refuse_command_types(state: ApiState, key: ApiKey, types: Iterable[str]) -> None:
    """Types that run commands on the workers need the installation's opt-in and, then, the
    key's ``jobs:command`` scope; the opt-in is checked first, so an installation without it
    answers the same whatever the key. Nothing has been written yet."""
    for name in types:
        spec = state.types.get(name)
        if spec.runs_commands:
            refuse_disabled_command_type(spec, state.settings.command_types_enabled)
            check_scope(
                key, JOBS_COMMAND, needed_for=f"job type {spec.name!r} runs commands on the workers"
            )


def store_and_publish(
    state: ApiState, key: ApiKey, jobs: Sequence[NewJob]
) -> list[tuple[Job, bool]]:
    """One transaction for all, then publish the new scheduled ones (as the producer does).

    A failed publish is not the client's problem: the jobs are committed and the leading
    reaper publishes undispatched jobs.
    """
    refuse_command_types(state, key, [new.type for new in jobs])
    settings = state.settings
    started = time.perf_counter()
    with transaction(state.engine) as conn:
        stored = submit_many(
            conn,
            jobs,
            max_payload_bytes=settings.max_payload_bytes,
            types=state.types,
            actor=actor(key),
            dispatching=True,
            sealed=settings.sealed,
            commands_enabled=settings.command_types_enabled,
        )
    metrics.GUARD_SECONDS.labels("submit").observe(time.perf_counter() - started)
    fresh = [
        dispatch_ref(job)
        for job, created in stored
        if created and job.status is JobStatus.SCHEDULED and job.dispatched_at is not None
    ]
    publish_jobs(
        state.engine,
        state.publisher,
        fresh,
        premarked=True,
        chunk_size=settings.dispatch_chunk_size,
    )
    return stored


def _read(state: ApiState, key: ApiKey, job_id: int) -> Job:
    with transaction(state.engine) as conn:
        return visible(key, JobsRepository(conn).get(job_id))


@router.post(
    "",
    status_code=201,
    response_model=JobOut,
    summary="Create a job",
    responses={
        200: {"model": JobOut, "description": "Replayed: this Idempotency-Key made this job."},
        409: {"model": ErrorOut, "description": "The Idempotency-Key was used with another body."},
        **QUOTA_EXCEEDED_RESPONSES,
    },
)
def create_job(
    request: Request,
    response: Response,
    body: JobCreate,
    key: Annotated[ApiKey, Depends(require(JOBS_WRITE))],
    tenant: TenantHeader,
    idempotency_key: Annotated[
        IdempotencyKey | None,
        Header(alias="Idempotency-Key", description="Same key and body: the same job, once."),
    ] = None,
) -> JobOut:
    state = api_state(request)
    [(job, created)] = store_and_publish(
        state, key, [new_job(body, acting_tenant(key, tenant), idempotency_key)]
    )
    if not created:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return JobOut.of(job, show_traceback=sees_tracebacks(key))


@router.post(
    "/batch",
    status_code=201,
    response_model=JobBatch,
    summary="Create jobs at once",
    responses=QUOTA_EXCEEDED_RESPONSES,
)
def create_jobs(
    request: Request,
    body: BatchCreate,
    key: Annotated[ApiKey, Depends(require(JOBS_WRITE))],
    tenant: TenantHeader,
) -> JobBatch:
    """All are validated before any is written, and all are stored in one transaction."""
    state = api_state(request)
    owner = acting_tenant(key, tenant)
    stored = store_and_publish(
        state, key, [new_job(item, owner, item.idempotency_key) for item in body.jobs]
    )
    return JobBatch(jobs=[JobOut.of(job, show_traceback=sees_tracebacks(key)) for job, _ in stored])


@router.get("", response_model=JobList, summary="List jobs, by id, a page at a time")
def list_jobs(
    request: Request,
    key: Annotated[ApiKey, Depends(require(JOBS_READ))],
    status: Annotated[list[JobStatus] | None, Query(description="Repeat for several.")] = None,
    type: Annotated[list[Name] | None, Query(max_length=50)] = None,
    queue: Annotated[list[Name] | None, Query(max_length=50)] = None,
    created_after: Annotated[
        AwareDatetime | None,
        Query(alias="createdAfter", description="ISO 8601 with an offset; inclusive."),
    ] = None,
    created_before: Annotated[
        AwareDatetime | None, Query(alias="createdBefore", description="Exclusive.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
    tenant: Annotated[
        str | None, Header(alias="X-Tenant-Id", max_length=200, description="Admin keys only.")
    ] = None,
) -> JobList:
    state = api_state(request)
    flt = JobFilter(
        tenant_id=acting_tenant(key, tenant),
        statuses=status or (),
        types=type or (),
        queues=queue or (),
        created_from=created_after,
        created_to=created_before,
    )
    after_id = decode_cursor(cursor) if cursor else 0
    with transaction(state.engine) as conn:
        page = JobsRepository(conn).list(flt, after_id=after_id, limit=limit)
    return JobList(
        items=[JobOut.of(job, show_traceback=sees_tracebacks(key)) for job in page.jobs],
        next_cursor=encode_cursor(page.next_cursor) if page.next_cursor is not None else None,
    )


@router.get("/{job_id}", response_model=JobOut, summary="One job, progress included")
def get_job(
    request: Request, job_id: JobId, key: Annotated[ApiKey, Depends(require(JOBS_READ))]
) -> JobOut:
    job = _read(api_state(request), key, job_id)
    return JobOut.of(job, show_traceback=sees_tracebacks(key))


@router.delete(
    "/{job_id}",
    response_model=JobOut,
    summary="Cancel a job",
    responses={409: {"model": ErrorOut, "description": "The job already completed or failed."}},
)
def cancel(
    request: Request, job_id: JobId, key: Annotated[ApiKey, Depends(require(JOBS_WRITE))]
) -> JobOut:
    """Cancelling a cancelled job changes nothing and answers 200; a running job's task is
    revoked with termination."""
    state = api_state(request)
    _read(state, key, job_id)
    started = time.perf_counter()
    outcome = cancel_job(
        state.engine,
        job_id,
        actor=actor(key),
        reason="cancelled through the API",
        revoker=state.revoker,
        origin=origin_of(request),
    )
    metrics.GUARD_SECONDS.labels("cancel").observe(time.perf_counter() - started)
    return JobOut.of(outcome.job, show_traceback=sees_tracebacks(key))


@router.get("/{job_id}/history", response_model=HistoryList, summary="A job's transitions")
def history(
    request: Request, job_id: JobId, key: Annotated[ApiKey, Depends(require(JOBS_READ))]
) -> HistoryList:
    state = api_state(request)
    with transaction(state.engine) as conn:
        visible(key, JobsRepository(conn).get(job_id))
        rows = JobHistoryRepository(conn).for_job(job_id)
    return HistoryList(items=[HistoryItem.of(h) for h in rows])
