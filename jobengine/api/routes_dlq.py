"""``/api/v1/dlq`` and ``POST /api/v1/jobs/{id}/retry``: the dead-letter operations over HTTP.

The same service as the CLI's (``jobengine.dead_letters``), scoped to the key's tenant: a dead
letter of another tenant answers 404. Reading needs ``jobs:read``; replaying and discarding
``dlq:replay`` (retrying one failed job ``jobs:write``); purging ``admin``. A replay that
patches the payload of a type that runs commands writes a new command, so it also needs
``jobs:command``, as submitting one does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request
from pydantic import AwareDatetime

from jobengine.api.auth import acting_tenant, check_scope, require, sees_tracebacks, visible
from jobengine.api.cursors import DEAD_LETTER_CURSOR, decode_cursor, encode_cursor
from jobengine.api.errors import ApiError
from jobengine.api.keys import ADMIN, DLQ_REPLAY, JOBS_COMMAND, JOBS_READ, JOBS_WRITE, ApiKey
from jobengine.api.routes_jobs import JobId, actor
from jobengine.api.schemas import ERROR_RESPONSES, ErrorOut, JobOut, Name
from jobengine.api.schemas_dlq import (
    BulkReplayIn,
    BulkReplayOut,
    DeadLetterDetail,
    DeadLetterList,
    DiscardIn,
    DiscardOut,
    PurgeOut,
    ReplayIn,
    ReplayOut,
    detail,
    summary,
)
from jobengine.api.state import ApiState, api_state
from jobengine.audit.rest import origin_of
from jobengine.dead_letters import DeadLetters, ReplayOptions
from jobengine.domain.dead_letter import DeadLetterReason, DeadLetterStatus
from jobengine.errors import UnknownJobType
from jobengine.store.database import transaction
from jobengine.store.dead_letter_repository import DeadLetterFilter
from jobengine.store.jobs_repository import JobsRepository

router = APIRouter(prefix="/api/v1", tags=["dead letters"], responses=ERROR_RESPONSES)

DeadLetterId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The dead letter's id.")]
AdminTenant = Annotated[
    str | None, Header(alias="X-Tenant-Id", max_length=200, description="Admin keys only.")
]

MAX_BULK = 1000
"""A bulk replay over HTTP takes at most this many entries; the CLI takes any number."""


class TooManyToReplay(ApiError):
    status = 422
    code = "TOO_MANY_TO_REPLAY"
    hint = "Narrow the filter (type, queue, reason, time range) or use `jobengine dlq replay`."


class FilterRequired(ApiError):
    status = 422
    code = "FILTER_REQUIRED"
    hint = "Name at least one filter, or set everything: true to replay every open entry."


StatusFilter = Literal["open", "replayed", "discarded", "all"]


def statuses_of(values: list[StatusFilter] | None) -> tuple[DeadLetterStatus, ...]:
    """``?status=``: ``all`` means every status, as the CLI's ``--status all`` does."""
    if not values:
        return (DeadLetterStatus.OPEN,)
    if "all" in values:
        return ()
    return tuple(DeadLetterStatus(v) for v in values)


def service(state: ApiState) -> DeadLetters:
    return DeadLetters(
        state.engine,
        publisher=state.publisher,
        types=state.types,
        max_payload_bytes=state.settings.max_payload_bytes,
    )


def _scope(key: ApiKey, tenant: str | None) -> str | None:
    """The tenant whose entries a request sees: the key's; an admin's choice, or all."""
    if key.is_admin and tenant is None:
        return None
    return acting_tenant(key, tenant)


def _own(key: ApiKey) -> str | None:
    """The tenant one entry or job must belong to for ``key``: its own; any for admin keys."""
    return None if key.is_admin else key.tenant_id


def _refuse_command_patch(
    state: ApiState, key: ApiKey, job_types: Iterable[str], body: ReplayIn
) -> None:
    """A payload patch on a command-running type is a new command: it needs ``jobs:command``.
    A type the catalogue does not know has no handler it could be run by."""
    if body.payload_patch is None:
        return
    for name in sorted(set(job_types)):
        try:
            runs_commands = state.types.get(name).runs_commands
        except UnknownJobType:
            continue
        if runs_commands:
            check_scope(
                key,
                JOBS_COMMAND,
                needed_for=f"a payload patch on job type {name!r} changes a command it runs",
            )


def _options(key: ApiKey, body: ReplayIn) -> ReplayOptions:
    return ReplayOptions(
        actor=actor(key),
        reason=body.reason,
        payload_patch=body.payload_patch,
        fresh_budget=body.fresh_budget,
    )


@router.get("/dlq", response_model=DeadLetterList, summary="List dead letters, by id")
def list_dead_letters(
    request: Request,
    key: Annotated[ApiKey, Depends(require(JOBS_READ))],
    type: Annotated[list[Name] | None, Query(max_length=50)] = None,
    queue: Annotated[list[Name] | None, Query(max_length=50)] = None,
    failure_reason: Annotated[
        list[DeadLetterReason] | None,
        Query(alias="failureReason", description="Why the job failed for good (repeatable)."),
    ] = None,
    reason: Annotated[
        list[DeadLetterReason] | None,
        Query(deprecated=True, description="Old name of failureReason; kept for one release."),
    ] = None,
    error_class: Annotated[list[Name] | None, Query(alias="errorClass", max_length=50)] = None,
    status: Annotated[
        list[StatusFilter] | None,
        Query(description="open, replayed, discarded, or all. Default: open. Repeatable."),
    ] = None,
    failed_after: Annotated[AwareDatetime | None, Query(alias="failedAfter")] = None,
    failed_before: Annotated[AwareDatetime | None, Query(alias="failedBefore")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
    tenant: AdminTenant = None,
) -> DeadLetterList:
    flt = DeadLetterFilter(
        tenant_id=_scope(key, tenant),
        types=type or (),
        queues=queue or (),
        reasons=[*(failure_reason or ()), *(reason or ())],
        error_classes=error_class or (),
        statuses=statuses_of(status),
        failed_from=failed_after,
        failed_to=failed_before,
    )
    after = decode_cursor(cursor, DEAD_LETTER_CURSOR) if cursor else 0
    dead_letters = service(api_state(request))
    page = dead_letters.page(flt, after_id=after, limit=limit)
    total = dead_letters.total(flt)
    return DeadLetterList(
        items=[summary(e) for e in page.items],
        next_cursor=(
            encode_cursor(page.next_cursor, DEAD_LETTER_CURSOR)
            if page.next_cursor is not None
            else None
        ),
        total=total.count,
        total_exact=total.exact,
    )


@router.get("/dlq/{dead_letter_id}", response_model=DeadLetterDetail, summary="One dead letter")
def get_dead_letter(
    request: Request,
    dead_letter_id: DeadLetterId,
    key: Annotated[ApiKey, Depends(require(JOBS_READ))],
) -> DeadLetterDetail:
    """With its payload snapshot, whole timeline, every replay's outcome and, for admin keys,
    its traceback."""
    entry = service(api_state(request)).get(dead_letter_id, _own(key))
    return detail(entry, show_traceback=sees_tracebacks(key))


@router.post(
    "/dlq/{dead_letter_id}/replay",
    response_model=ReplayOut,
    summary="Replay one dead letter",
    responses={409: {"model": ErrorOut, "description": "The entry was discarded."}},
)
def replay_dead_letter(
    request: Request,
    dead_letter_id: DeadLetterId,
    key: Annotated[ApiKey, Depends(require(DLQ_REPLAY))],
    body: Annotated[ReplayIn | None, Body()] = None,
) -> ReplayOut:
    """Safe to repeat: an entry replayed before answers ``already_replayed`` and does nothing."""
    tenant = _own(key)
    body = body or ReplayIn()
    dead_letters = service(api_state(request))
    if body.payload_patch is not None:
        _refuse_command_patch(
            api_state(request), key, [dead_letters.get(dead_letter_id, tenant).type], body
        )
    done = dead_letters.replay(
        dead_letter_id, _options(key, body), tenant_id=tenant, origin=origin_of(request)
    )
    return ReplayOut.of(done)


@router.post("/dlq/replay", response_model=BulkReplayOut, summary="Replay dead letters by filter")
def replay_many(
    request: Request,
    body: BulkReplayIn,
    key: Annotated[ApiKey, Depends(require(DLQ_REPLAY))],
    tenant: AdminTenant = None,
) -> BulkReplayOut:
    """The open entries matching the filter when the request arrives, at most 1000."""
    flt = DeadLetterFilter(
        tenant_id=_scope(key, tenant),
        types=body.type,
        queues=body.queue,
        reasons=body.failure_reason,
        error_classes=body.error_class,
        failed_from=body.failed_after,
        failed_to=body.failed_before,
    )
    narrowed = any(
        (body.type, body.queue, body.failure_reason, body.error_class, body.failed_after)
    )
    if not (narrowed or body.failed_before or body.everything):
        raise FilterRequired("a bulk replay needs a filter")
    dead_letters = service(api_state(request))
    options = _options(key, body)
    selection = dead_letters.replay_many(flt, options, dry_run=True)
    if len(selection.selected) > MAX_BULK:
        raise TooManyToReplay(
            f"{len(selection.selected)} dead letters match; at most {MAX_BULK} per request"
        )
    _refuse_command_patch(api_state(request), key, (e.type for e in selection.selected), body)
    if body.dry_run or not selection.selected:
        return BulkReplayOut.of(selection)
    fixed = replace(flt, max_id=selection.selected[-1].id)
    return BulkReplayOut.of(
        dead_letters.replay_many(
            fixed, options, max_per_second=body.max_per_second, origin=origin_of(request)
        )
    )


@router.post(
    "/dlq/{dead_letter_id}/discard",
    response_model=DiscardOut,
    summary="Discard a dead letter for good",
    responses={409: {"model": ErrorOut, "description": "The entry was replayed, not open."}},
)
def discard_dead_letter(
    request: Request,
    dead_letter_id: DeadLetterId,
    key: Annotated[ApiKey, Depends(require(DLQ_REPLAY))],
    body: Annotated[DiscardIn | None, Body()] = None,
) -> DiscardOut:
    tenant = _own(key)
    changed = service(api_state(request)).discard(
        dead_letter_id,
        actor=actor(key),
        reason=body.reason if body else None,
        tenant_id=tenant,
        origin=origin_of(request),
    )
    return DiscardOut(dead_letter_id=dead_letter_id, discarded=changed)


@router.delete("/dlq", response_model=PurgeOut, summary="Purge replayed and discarded entries")
def purge_dead_letters(
    request: Request,
    key: Annotated[ApiKey, Depends(require(ADMIN))],
    older_than_seconds: Annotated[
        float, Query(alias="olderThanSeconds", ge=0, le=10 * 365 * 86400)
    ],
) -> PurgeOut:
    """Open entries are never purged; jobs and their history stay."""
    before = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
    return PurgeOut(purged=service(api_state(request)).purge(before, origin=origin_of(request)))


@router.post(
    "/jobs/{job_id}/retry",
    response_model=JobOut,
    tags=["jobs"],
    summary="Retry a job that failed for good",
    responses={409: {"model": ErrorOut, "description": "The job is not failed."}},
)
def retry_job(
    request: Request,
    job_id: JobId,
    key: Annotated[ApiKey, Depends(require(JOBS_WRITE))],
    body: Annotated[ReplayIn | None, Body()] = None,
) -> JobOut:
    """Replays the job's dead letter; retrying a job already sent back changes nothing.

    Another tenant's job answers exactly as a missing one (``JOB_NOT_FOUND``), checked before
    the dead letter is looked up, so no answer tells which ids exist."""
    state = api_state(request)
    with transaction(state.engine) as conn:
        job = visible(key, JobsRepository(conn).get(job_id))
    tenant = _own(key)
    body = body or ReplayIn()
    dead_letters = service(state)
    entry_id = dead_letters.id_for_job(job_id, tenant)
    _refuse_command_patch(state, key, [job.type], body)
    dead_letters.replay(entry_id, _options(key, body), tenant_id=tenant, origin=origin_of(request))
    with transaction(state.engine) as conn:
        return JobOut.of(JobsRepository(conn).get(job_id), show_traceback=sees_tracebacks(key))
