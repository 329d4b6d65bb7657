"""``/api/v1/runs``: submit a workflow (jobs and edges), read it with its graph, list, cancel.

A run is written in one transaction by ``jobengine.runs.service`` and its roots are published
after the commit, as job creation does; a refused run (a cycle, an edge to a key outside the
run, a duplicate key, a job its type refuses) writes nothing. Runs of another tenant answer
404, as jobs do. The run's event stream reads the outbox like the job streams
(``store.run_outbox``) and adds the run's own status changes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from jobengine.api import metrics
from jobengine.api.auth import acting_tenant, require, sees_tracebacks
from jobengine.api.cursors import RUN_CURSOR, decode_cursor, encode_cursor
from jobengine.api.keys import JOBS_READ, JOBS_WRITE, ApiKey
from jobengine.api.routes_jobs import TenantHeader, actor, refuse_command_types
from jobengine.api.routes_streams import PAGE, After, LastEventId, sse_message
from jobengine.api.schemas import (
    ERROR_RESPONSES,
    QUOTA_EXCEEDED_RESPONSES,
    ErrorOut,
    IdempotencyKey,
    Name,
)
from jobengine.api.schemas_runs import RunCancelled, RunCreate, RunDetail, RunList, RunOut
from jobengine.api.state import ApiState, api_state
from jobengine.audit.rest import origin_of
from jobengine.dispatch import publish_jobs
from jobengine.domain.job import Job
from jobengine.domain.run import Run
from jobengine.domain.status import RunStatus
from jobengine.producer import dispatch_ref
from jobengine.run_cancellation import cancel_run as cancel_run_jobs
from jobengine.runs import service
from jobengine.store.database import transaction
from jobengine.store.outbox import Position
from jobengine.store.run_outbox import RunOutboxReader, RunPage
from jobengine.submission import validate

router = APIRouter(prefix="/api/v1/runs", tags=["runs"], responses=ERROR_RESPONSES)

RunId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The run's id.")]


def tenant_scope(key: ApiKey) -> str | None:
    """The tenant a read is limited to: the key's own; None (every tenant) for admin keys."""
    return None if key.is_admin else key.tenant_id


def publish_scheduled(state: ApiState, jobs: list[Job]) -> None:
    """The run's jobs that are due now go to the broker after the commit, as a created job
    does; a failed publish leaves them to the leading reaper's dispatcher. Those born
    unmarked (a fair-shared queue's, a capped tenant's) wait for the leader's turn."""
    fresh = [dispatch_ref(job) for job in jobs if job.dispatched_at is not None]
    publish_jobs(
        state.engine,
        state.publisher,
        fresh,
        premarked=True,
        chunk_size=state.settings.dispatch_chunk_size,
    )


def graph_of(state: ApiState, key: ApiKey, run_id: int) -> RunDetail:
    with transaction(state.engine) as conn:
        graph = service.run_graph(conn, run_id, tenant_scope(key))
    return RunDetail.of_graph(graph, show_traceback=sees_tracebacks(key))


@router.post(
    "",
    status_code=201,
    response_model=RunDetail,
    summary="Submit a run: jobs and the edges between them",
    responses={
        200: {"model": RunDetail, "description": "Replayed: this Idempotency-Key made this run."},
        409: {"model": ErrorOut, "description": "The Idempotency-Key was used with another body."},
        422: {
            "model": ErrorOut,
            "description": "A cycle, an unknown or duplicate key, a job "
            "its type refuses; the message names it and nothing was written.",
        },
        **QUOTA_EXCEEDED_RESPONSES,
    },
)
def create_run(
    request: Request,
    response: Response,
    body: RunCreate,
    key: Annotated[ApiKey, Depends(require(JOBS_WRITE))],
    tenant: TenantHeader,
    idempotency_key: Annotated[
        IdempotencyKey | None,
        Header(alias="Idempotency-Key", description="Same key and body: the same run, once."),
    ] = None,
) -> RunDetail:
    """Roots are scheduled at once; every other job waits in ``pending`` for its parents."""
    state = api_state(request)
    settings = state.settings
    refuse_command_types(state, key, {job.type for job in body.jobs})
    spec = body.to_spec(acting_tenant(key, tenant), idempotency_key)
    started = time.perf_counter()
    with transaction(state.engine) as conn:
        run, jobs, created = service.submit_run_created(
            conn,
            spec,
            actor=actor(key),
            dispatching=True,
            validate_job=lambda new: validate(
                new,
                max_payload_bytes=settings.max_payload_bytes,
                types=state.types,
                sealed=settings.sealed,
                commands_enabled=settings.command_types_enabled,
            ),
        )
        graph = service.run_graph(conn, run.id)
    metrics.GUARD_SECONDS.labels("submit_run").observe(time.perf_counter() - started)
    if created:
        publish_scheduled(state, jobs)
    else:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return RunDetail.of_graph(graph, show_traceback=sees_tracebacks(key))


@router.get("", response_model=RunList, summary="List runs, by id, a page at a time")
def list_runs(
    request: Request,
    key: Annotated[ApiKey, Depends(require(JOBS_READ))],
    status: Annotated[RunStatus | None, Query()] = None,
    project_id: Annotated[Name | None, Query(alias="projectId")] = None,
    name: Annotated[Name | None, Query(description="The run's exact name.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
    tenant: Annotated[
        str | None, Header(alias="X-Tenant-Id", max_length=200, description="Admin keys only.")
    ] = None,
) -> RunList:
    state = api_state(request)
    after_id = decode_cursor(cursor, RUN_CURSOR) if cursor else 0
    with transaction(state.engine) as conn:
        runs = service.list_runs(
            conn,
            acting_tenant(key, tenant),
            status=status,
            project_id=project_id,
            name=name,
            after_id=after_id,
            limit=limit + 1,
        )
    page, more = runs[:limit], len(runs) > limit
    return RunList(
        items=[RunOut.of(run) for run in page],
        next_cursor=encode_cursor(page[-1].id, RUN_CURSOR) if more else None,
    )


@router.get("/{run_id}", response_model=RunDetail, summary="One run with its graph")
def get_run(
    request: Request, run_id: RunId, key: Annotated[ApiKey, Depends(require(JOBS_READ))]
) -> RunDetail:
    return graph_of(api_state(request), key, run_id)


@router.post(
    "/{run_id}/cancel",
    response_model=RunCancelled,
    summary="Cancel a run: every job not final is cancelled, running ones revoked",
    responses={409: {"model": ErrorOut, "description": "The run already completed or failed."}},
)
def cancel_run(
    request: Request, run_id: RunId, key: Annotated[ApiKey, Depends(require(JOBS_WRITE))]
) -> RunCancelled:
    """Cancelling a cancelled run changes nothing and answers 200 with no job cancelled."""
    state = api_state(request)
    started = time.perf_counter()
    cancelled, _ = cancel_run_jobs(
        state.engine,
        run_id,
        tenant_id=tenant_scope(key),
        actor=actor(key),
        reason="run cancelled through the API",
        revoker=state.revoker,
        origin=origin_of(request),
    )
    metrics.GUARD_SECONDS.labels("cancel_run").observe(time.perf_counter() - started)
    detail = graph_of(state, key, run_id)
    return RunCancelled(**detail.model_dump(), cancelled_job_ids=[job.id for job in cancelled])


RUN_STATUS_EVENT = "run.status"
"""The stream's own event: the run (``RunOut``) when its status changes."""


@dataclass(frozen=True, slots=True)
class RunPoll:
    page: RunPage
    run: Run
    settled: bool
    """The run is final and every event of its jobs has been read: the stream may end."""


def poll_run(state: ApiState, run: Run, scan_from: Position, delivered: Position) -> RunPoll:
    """One page of the run's events and the run as the same snapshot sees it."""
    with transaction(state.engine) as conn:
        reader = RunOutboxReader(conn)
        page = reader.page(run.id, run.tenant_id, scan_from, PAGE)
        now = service.get_run(conn, run.id)
        last = page.events[-1].position if page.events else delivered
        settled = (
            not page.full and now.status is not RunStatus.RUNNING and reader.settled(run.id, last)
        )
    return RunPoll(page, now, settled)


def run_status_message(run: Run, position: Position) -> str:
    return (
        f"id: {position}\nevent: {RUN_STATUS_EVENT}\n"
        f"data: {RunOut.of(run).model_dump_json(by_alias=True)}\n\n"
    )


async def run_stream(state: ApiState, run: Run, after: Position) -> AsyncIterator[str]:
    """The run's job events as they commit, and its status each time it changes; a final
    status is sent only after the last event of the run's jobs, and ends the stream."""
    scan_from = delivered = after
    sent: RunStatus | None = None
    quiet_since = time.monotonic()
    while True:
        poll = await anyio.to_thread.run_sync(poll_run, state, run, scan_from, delivered)
        for event in poll.page.events:
            yield sse_message(event)
            delivered = event.position
        scan_from = poll.page.scanned_to
        status = poll.run.status
        if status is not sent and (status is RunStatus.RUNNING or poll.settled):
            yield run_status_message(poll.run, delivered)
            sent = status
        if poll.settled:
            return
        if poll.page.events:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= state.settings.stream_heartbeat_seconds:
            quiet_since = time.monotonic()
            yield ": heartbeat\n\n"
        if not poll.page.full:
            await anyio.sleep(state.settings.stream_poll_seconds)


@router.get(
    "/{run_id}/events",
    summary="The run's events (SSE): its jobs' transitions and progress, its status changes",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "text/event-stream as /jobs/{id}/events, plus 'event: run.status' "
            "with the run (RunOut) when its status changes; ends after the run's final status.",
            "content": {"text/event-stream": {}},
        }
    },
)
def run_events(
    request: Request,
    run_id: RunId,
    key: Annotated[ApiKey, Depends(require(JOBS_READ))],
    last_event_id: LastEventId = None,
    after: After = None,
) -> StreamingResponse:
    """From the run's first event, or after ``Last-Event-ID`` / ``?after=`` when resuming."""
    state = api_state(request)
    with transaction(state.engine) as conn:
        run = service.get_run(conn, run_id, tenant_scope(key))
        first = RunOutboxReader(conn).first(run_id)
    resume = last_event_id or after
    start = max(Position.parse(resume), first) if resume else first
    return StreamingResponse(
        run_stream(state, run, start),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
