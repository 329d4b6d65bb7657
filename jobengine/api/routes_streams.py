"""Event streams: Server-Sent Events and a WebSocket twin, both resumable from an event id.

An event's id is its outbox position ``<txid>-<eventId>`` (see ``store.outbox``): resuming from
it, with ``Last-Event-ID`` or ``?after=``, gives every later event exactly once, in commit
order, even when a transaction that took an id earlier commits later. Streams poll Postgres
(``JOBENGINE_STREAM_POLL_SECONDS``) rather than LISTEN: a poll reads by index from a position,
needs no connection held per stream, and cannot miss a notification sent while reconnecting.

A one-job stream ends after the event that leaves the job in a final state, which is what a
client waiting for a job's outcome needs.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request, WebSocket
from fastapi.responses import StreamingResponse
from starlette.websockets import WebSocketDisconnect

from jobengine.api.auth import check_scope, key_for, require, visible
from jobengine.api.errors import Forbidden, status_for
from jobengine.api.keys import JOBS_READ, ApiKey
from jobengine.api.routes_jobs import JobId
from jobengine.api.schemas import ERROR_RESPONSES
from jobengine.api.state import ApiState, api_state
from jobengine.errors import JobEngineError, ValidationError
from jobengine.store.database import transaction
from jobengine.store.jobs_repository import JobsRepository
from jobengine.store.outbox import START, OutboxReader, Position, StreamEvent, StreamScope

router = APIRouter(prefix="/api/v1", tags=["events"], responses=ERROR_RESPONSES)

PAGE = 500
SSE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "text/event-stream: 'id: <txid>-<eventId>', 'event: job.transition' or "
        "'job.progress', 'data: <EventEnvelope JSON, camelCase as REST>'; a ': heartbeat' "
        "comment when idle.",
        "content": {"text/event-stream": {}},
    }
}

LastEventId = Annotated[
    str | None, Header(alias="Last-Event-ID", max_length=60, description="Resume after this id.")
]
After = Annotated[
    str | None,
    Query(max_length=60, description="Resume after this event id (<txid>-<eventId>)."),
]


def poll(state: ApiState, scope: StreamScope, after: Position) -> tuple[list[StreamEvent], bool]:
    """The next page of events, and whether a one-job stream has nothing more to say."""
    with transaction(state.engine) as conn:
        reader = OutboxReader(conn)
        events = reader.page(scope, after, PAGE)
        ended = not events and scope.job_id is not None and reader.job_settled(scope.job_id, after)
    return events, ended


def start_position(state: ApiState, scope: StreamScope, resume: str | None) -> Position:
    """Where a stream begins: after ``resume``; else a job's first event, or now for a feed."""
    if resume:
        return Position.parse(resume)
    if scope.job_id is not None:
        return START
    with transaction(state.engine) as conn:
        return OutboxReader(conn).head()


async def follow(
    state: ApiState, scope: StreamScope, after: Position
) -> AsyncIterator[StreamEvent | None]:
    """Events after ``after`` as they commit; None when a heartbeat is due."""
    settings = state.settings
    quiet_since = time.monotonic()
    while True:
        events, ended = await anyio.to_thread.run_sync(poll, state, scope, after)
        for event in events:
            yield event
            after = event.position
        if ended:
            return
        if events:
            quiet_since = time.monotonic()
            if len(events) == PAGE:
                continue
        elif time.monotonic() - quiet_since >= settings.stream_heartbeat_seconds:
            quiet_since = time.monotonic()
            yield None
        await anyio.sleep(settings.stream_poll_seconds)


def sse_message(event: StreamEvent) -> str:
    return (
        f"id: {event.position}\nevent: {event.envelope.type}\n"
        f"data: {event.envelope.model_dump_json(by_alias=True)}\n\n"
    )


def sse(state: ApiState, scope: StreamScope, after: Position) -> StreamingResponse:
    async def body() -> AsyncIterator[str]:
        async for event in follow(state, scope, after):
            yield ": heartbeat\n\n" if event is None else sse_message(event)

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def job_scope(state: ApiState, key: ApiKey, job_id: int) -> StreamScope:
    with transaction(state.engine) as conn:
        visible(key, JobsRepository(conn).get(job_id))
    return StreamScope(job_id=job_id)


def feed_scope(key: ApiKey, everyone: bool) -> StreamScope:
    if everyone:
        if not key.is_admin:
            raise Forbidden("only admin keys may follow every tenant's events")
        return StreamScope()
    return StreamScope(tenant_id=key.tenant_id)


@router.get(
    "/jobs/{job_id}/events",
    summary="One job's events (SSE); ends after the job reaches a final state",
    response_class=StreamingResponse,
    responses=SSE_RESPONSE,
)
def job_events(
    request: Request,
    job_id: JobId,
    key: Annotated[ApiKey, Depends(require(JOBS_READ))],
    last_event_id: LastEventId = None,
    after: After = None,
) -> StreamingResponse:
    state = api_state(request)
    scope = job_scope(state, key, job_id)
    return sse(state, scope, start_position(state, scope, last_event_id or after))


@router.get(
    "/events",
    summary="The tenant's events (SSE); ?all=true: every tenant's (admin)",
    response_class=StreamingResponse,
    responses=SSE_RESPONSE,
)
def events(
    request: Request,
    key: Annotated[ApiKey, Depends(require(JOBS_READ))],
    everyone: Annotated[bool, Query(alias="all", description="Every tenant (admin keys).")] = False,
    last_event_id: LastEventId = None,
    after: After = None,
) -> StreamingResponse:
    """Without a resume point the stream starts now: only events committed from now on."""
    state = api_state(request)
    scope = feed_scope(key, everyone)
    return sse(state, scope, start_position(state, scope, last_event_id or after))


WS_CLOSE_BASE = 4000
"""A refused WebSocket closes with 4000 + the HTTP status (4401, 4403, 4404, 4422) after one
frame ``{"error": <envelope>}``."""


def _ws_setup(state: ApiState, websocket: WebSocket) -> tuple[StreamScope, Position]:
    params = websocket.query_params
    header = websocket.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else params.get("token")
    key = key_for(state, token)
    check_scope(key, JOBS_READ)
    raw_job = params.get("jobId")
    if raw_job is not None:
        if not raw_job.isdigit() or not 1 <= int(raw_job) <= 2**63 - 1:
            raise ValidationError(f"jobId {raw_job[:40]!r} is not a job id", hint="e.g. 42")
        scope = job_scope(state, key, int(raw_job))
    else:
        scope = feed_scope(key, params.get("all", "").lower() in ("1", "true"))
    resume = websocket.headers.get("last-event-id") or params.get("after")
    return scope, start_position(state, scope, resume)


@router.websocket("/ws/events")
async def ws_events(websocket: WebSocket) -> None:
    """The streams as JSON text frames ``{"id", "event", "data"}``.

    Query: ``jobId`` (one job; the socket closes normally after its final event), ``all=true``
    (admin), ``after`` (resume). Auth: the bearer header, or ``?token=<key>`` for browsers,
    which cannot set headers on a WebSocket (the key then appears in URLs: use short-lived
    keys there). Refusals close with 4000 + the HTTP status.
    """
    state = api_state(websocket)
    await websocket.accept()
    try:
        scope, after = await anyio.to_thread.run_sync(_ws_setup, state, websocket)
    except JobEngineError as exc:
        envelope = {"code": exc.code, "message": exc.message, "hint": exc.hint}
        await websocket.send_text(json.dumps({"error": {**envelope, "retryable": exc.retryable}}))
        await websocket.close(WS_CLOSE_BASE + status_for(exc))
        return

    async def until_client_leaves(cancel: anyio.CancelScope) -> None:
        try:
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass
        finally:
            cancel.cancel()

    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(until_client_leaves, tasks.cancel_scope)
            async for event in follow(state, scope, after):
                if event is not None:
                    frame = {
                        "id": str(event.position),
                        "event": event.envelope.type,
                        "data": event.envelope.model_dump(mode="json", by_alias=True),
                    }
                    await websocket.send_text(json.dumps(frame))
            await websocket.close()
            tasks.cancel_scope.cancel()
    except WebSocketDisconnect:
        return
