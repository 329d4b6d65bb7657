"""``/api/v1/schedules``: cadences that create a job or a run per slot, and what each became.

A tenant key manages its own tenant's schedules (``jobs:write`` to change them, ``jobs:read``
to read them), as it does its jobs; an admin key names another tenant with ``X-Tenant-Id``
and lists every tenant's. A schedule of another tenant answers 404, like a missing one.
Creating, editing, pausing and resuming never fire a slot: the leader fires each from
``nextSlotAt`` on.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response

from jobengine.api.auth import acting_tenant, require
from jobengine.api.cursors import decode_cursor, encode_cursor
from jobengine.api.keys import JOBS_READ, JOBS_WRITE, ApiKey
from jobengine.api.routes_jobs import refuse_command_types
from jobengine.api.schemas import ERROR_RESPONSES
from jobengine.api.schemas_schedules import (
    ScheduleCreate,
    ScheduledJobIn,
    ScheduledRunIn,
    ScheduleList,
    ScheduleOut,
    SchedulePatch,
    SlotList,
    SlotOut,
)
from jobengine.api.state import api_state
from jobengine.audit.rest import origin_of
from jobengine.schedules import registry
from jobengine.schedules.definition import ScheduleSpec, overlap_of
from jobengine.schedules.slots import Cadence
from jobengine.store.database import transaction

router = APIRouter(prefix="/api/v1/schedules", tags=["schedules"], responses=ERROR_RESPONSES)

SCHEDULE_CURSOR = "s1"
ScheduleId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The schedule's id.")]
TenantHeader = Annotated[
    str | None,
    Header(alias="X-Tenant-Id", max_length=200, description="Admin keys only: another tenant."),
]


def _scope(key: ApiKey, tenant: str | None) -> str | None:
    """The tenant whose schedules the request sees: None (all) for an admin naming none."""
    if key.is_admin and tenant is None:
        return None
    return acting_tenant(key, tenant)


def _now() -> datetime:
    return datetime.now(UTC)


def _types(job: ScheduledJobIn | None, run: ScheduledRunIn | None) -> list[str]:
    """The job types a schedule's slots create, for the command-type gate (in order, so a
    refusal names the same one every time)."""
    return sorted(({job.type} if job else set()) | (run.types() if run else set()))


@router.post("", status_code=201, response_model=ScheduleOut, summary="Create a schedule")
def create_schedule(
    request: Request,
    body: ScheduleCreate,
    key: Annotated[ApiKey, Depends(require(JOBS_WRITE))],
    tenant: TenantHeader = None,
) -> ScheduleOut:
    """Refused whole (422, naming the field) for a bad cron, zone, interval, job or run (a
    cycle, an edge to a key outside it), or for both or neither of job and run."""
    state = api_state(request)
    refuse_command_types(state, key, _types(body.job, body.run))
    spec = ScheduleSpec(
        name=body.name,
        cadence=Cadence.parse(
            cron=body.cron, interval_seconds=body.interval_seconds, zone=body.zone
        ),
        job=None if body.job is None else body.job.to_template(),
        run=None if body.run is None else body.run.to_template(),
        tenant_id=acting_tenant(key, tenant),
        project_id=body.project_id,
        start_at=body.start_at,
        end_at=body.end_at,
        jitter_seconds=body.jitter_seconds,
        overlap=overlap_of(body.overlap),
        catch_up_seconds=body.catch_up_seconds,
        paused=body.paused,
    )
    with transaction(state.engine) as conn:
        return ScheduleOut.of(registry.create(conn, spec, now=_now(), origin=origin_of(request)))


@router.get("", response_model=ScheduleList, summary="List schedules, by id")
def list_schedules(
    request: Request,
    key: Annotated[ApiKey, Depends(require(JOBS_READ))],
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
    tenant: TenantHeader = None,
) -> ScheduleList:
    after = decode_cursor(cursor, SCHEDULE_CURSOR) if cursor else 0
    with transaction(api_state(request).engine) as conn:
        found = registry.list_schedules(
            conn, tenant_id=_scope(key, tenant), after=after, limit=limit + 1
        )
    page, more = found[:limit], len(found) > limit
    return ScheduleList(
        items=[ScheduleOut.of(s) for s in page],
        next_cursor=encode_cursor(page[-1].id, SCHEDULE_CURSOR) if more else None,
    )


@router.get("/{schedule_id}", response_model=ScheduleOut, summary="One schedule")
def get_schedule(
    request: Request,
    schedule_id: ScheduleId,
    key: Annotated[ApiKey, Depends(require(JOBS_READ))],
    tenant: TenantHeader = None,
) -> ScheduleOut:
    with transaction(api_state(request).engine) as conn:
        return ScheduleOut.of(registry.get(conn, schedule_id, tenant_id=_scope(key, tenant)))


@router.get(
    "/{schedule_id}/slots",
    response_model=SlotList,
    summary="The slots decided: fired (with the job), skipped (and why) or buffered",
)
def list_slots(
    request: Request,
    schedule_id: ScheduleId,
    key: Annotated[ApiKey, Depends(require(JOBS_READ))],
    before: Annotated[
        datetime | None, Query(description="Slots before this, latest first.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    tenant: TenantHeader = None,
) -> SlotList:
    with transaction(api_state(request).engine) as conn:
        decided = registry.slots(
            conn,
            schedule_id,
            before=before or datetime.max.replace(tzinfo=UTC),
            limit=limit,
            tenant_id=_scope(key, tenant),
        )
    return SlotList(items=[SlotOut.of(d) for d in decided])


@router.patch("/{schedule_id}", response_model=ScheduleOut, summary="Change a schedule")
def patch_schedule(
    request: Request,
    schedule_id: ScheduleId,
    body: SchedulePatch,
    key: Annotated[ApiKey, Depends(require(JOBS_WRITE))],
    tenant: TenantHeader = None,
) -> ScheduleOut:
    """The next slot becomes the first after now under the new fields: nothing fires."""
    state = api_state(request)
    refuse_command_types(state, key, _types(body.job, body.run))
    scope = _scope(key, tenant)
    with transaction(state.engine) as conn:
        current = registry.get(conn, schedule_id, tenant_id=scope).spec
        cadence = current.cadence
        if body.cron is not None or body.interval_seconds is not None or body.zone is not None:
            replaced = body.cron is not None or body.interval_seconds is not None
            cadence = Cadence.parse(
                cron=body.cron if replaced else cadence.cron,
                interval_seconds=body.interval_seconds if replaced else cadence.interval_seconds,
                zone=body.zone or cadence.zone,
            )
        sent = body.model_fields_set
        job, run = current.job, current.run
        if body.job is not None or body.run is not None:  # one replaces the other; both: refused
            job = None if body.job is None else body.job.to_template()
            run = None if body.run is None else body.run.to_template()
        spec = replace(
            current,
            name=body.name or current.name,
            cadence=cadence,
            job=job,
            run=run,
            start_at=body.start_at if "start_at" in sent else current.start_at,
            end_at=body.end_at if "end_at" in sent else current.end_at,
            jitter_seconds=current.jitter_seconds
            if body.jitter_seconds is None
            else body.jitter_seconds,
            overlap=current.overlap if body.overlap is None else overlap_of(body.overlap),
            catch_up_seconds=current.catch_up_seconds
            if body.catch_up_seconds is None
            else body.catch_up_seconds,
        )
        changed = registry.update(
            conn, schedule_id, spec, now=_now(), tenant_id=scope, origin=origin_of(request)
        )
        return ScheduleOut.of(changed)


def _set_paused(
    request: Request, schedule_id: int, key: ApiKey, tenant: str | None, paused: bool
) -> ScheduleOut:
    with transaction(api_state(request).engine) as conn:
        changed = registry.set_paused(
            conn,
            schedule_id,
            paused,
            now=_now(),
            tenant_id=_scope(key, tenant),
            origin=origin_of(request),
        )
    return ScheduleOut.of(changed)


@router.post("/{schedule_id}/pause", response_model=ScheduleOut, summary="Pause a schedule")
def pause_schedule(
    request: Request,
    schedule_id: ScheduleId,
    key: Annotated[ApiKey, Depends(require(JOBS_WRITE))],
    tenant: TenantHeader = None,
) -> ScheduleOut:
    """No slot is decided while paused; a job already created runs as usual."""
    return _set_paused(request, schedule_id, key, tenant, True)


@router.post("/{schedule_id}/resume", response_model=ScheduleOut, summary="Resume a schedule")
def resume_schedule(
    request: Request,
    schedule_id: ScheduleId,
    key: Annotated[ApiKey, Depends(require(JOBS_WRITE))],
    tenant: TenantHeader = None,
) -> ScheduleOut:
    """From the first slot after now: the slots that passed while paused are not fired."""
    return _set_paused(request, schedule_id, key, tenant, False)


@router.delete("/{schedule_id}", status_code=204, summary="Delete a schedule and its slots")
def delete_schedule(
    request: Request,
    schedule_id: ScheduleId,
    key: Annotated[ApiKey, Depends(require(JOBS_WRITE))],
    tenant: TenantHeader = None,
) -> Response:
    """The jobs it created stay, with their ``scheduledFor``."""
    with transaction(api_state(request).engine) as conn:
        registry.delete(conn, schedule_id, tenant_id=_scope(key, tenant), origin=origin_of(request))
    return Response(status_code=204)
