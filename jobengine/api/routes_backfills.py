"""``/api/v1/backfills`` and ``/api/v1/backfill-sources``: backfills of a source's slots,
their progress, cancel; sources with their watermark.

Creating a backfill writes one row (or, with ``dryRun``, nothing) and answers at once: the
leading reaper creates the slots' jobs a batch a tick. A refusal (a range that ends before it
starts, more than ``MAX_SLOTS`` slots, a cadence that does not parse or differs from the
source's, a job its type refuses) is a 422 naming the field, and writes nothing. Backfills of
another tenant answer 404, as jobs do; admin keys see every tenant's.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response

from jobengine.api.auth import acting_tenant, require
from jobengine.api.cursors import decode_cursor, encode_cursor
from jobengine.api.keys import JOBS_READ, JOBS_WRITE, ApiKey
from jobengine.api.routes_jobs import TenantHeader, actor
from jobengine.api.routes_runs import tenant_scope
from jobengine.api.schemas import ERROR_RESPONSES, ErrorOut, Name
from jobengine.api.schemas_backfills import (
    BackfillCancelIn,
    BackfillCancelled,
    BackfillCreate,
    BackfillCreated,
    BackfillList,
    BackfillOut,
    BackfillSourceList,
    BackfillSourceOut,
    PlanOut,
)
from jobengine.api.state import api_state
from jobengine.audit.rest import origin_of
from jobengine.backfills import service
from jobengine.backfills.model import BackfillStatus
from jobengine.backfills.repository import BackfillRepository
from jobengine.store.database import transaction

router = APIRouter(prefix="/api/v1", tags=["backfills"], responses=ERROR_RESPONSES)

BACKFILL_CURSOR = "b1"
BackfillId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The backfill's id.")]
AdminTenant = Annotated[
    str | None, Header(alias="X-Tenant-Id", max_length=200, description="Admin keys only.")
]


@router.post(
    "/backfills",
    status_code=201,
    response_model=BackfillCreated,
    summary="Backfill a source's slots over a time range (or, with dryRun, list them)",
    responses={
        200: {"model": BackfillCreated, "description": "A dry run: nothing was written."},
        422: {
            "model": ErrorOut,
            "description": "A bad range or cadence, too many slots, a cadence other than the "
            "source's, a job its type refuses; the message names it and nothing was written.",
        },
    },
)
def create_backfill(
    request: Request,
    response: Response,
    body: BackfillCreate,
    key: Annotated[ApiKey, Depends(require(JOBS_WRITE))],
    tenant: TenantHeader,
) -> BackfillCreated:
    """Each slot (``start`` <= slot < ``end``) gets one job, once: a slot whose job exists
    (this backfill run before, an overlapping one) gets nothing new."""
    state = api_state(request)
    spec = body.to_spec(acting_tenant(key, tenant))
    with transaction(state.engine) as conn:
        created = service.create(
            conn,
            spec,
            dry_run=body.dry_run,
            created_by=actor(key),
            types=state.types,
            origin=origin_of(request),
        )
    if body.dry_run:
        response.status_code = 200
    return BackfillCreated(
        dry_run=body.dry_run,
        plan=PlanOut.of(created.plan),
        backfill=None
        if created.backfill is None
        else BackfillOut.of(created.backfill, created.progress),
    )


@router.get("/backfills", response_model=BackfillList, summary="List backfills, newest first")
def list_backfills(
    request: Request,
    key: Annotated[ApiKey, Depends(require(JOBS_READ))],
    tenant: AdminTenant = None,
    source: Annotated[Name | None, Query(description="The source's exact name.")] = None,
    status: Annotated[BackfillStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> BackfillList:
    before = decode_cursor(cursor, BACKFILL_CURSOR) if cursor else None
    scope = tenant_scope(key) if tenant is None else acting_tenant(key, tenant)
    with transaction(api_state(request).engine) as conn:
        found = BackfillRepository(conn).page(
            tenant_id=scope, source=source, status=status, before=before, limit=limit + 1
        )
    page, more = found[:limit], len(found) > limit
    return BackfillList(
        items=[BackfillOut.of(b) for b in page],
        next_cursor=encode_cursor(page[-1].id, BACKFILL_CURSOR) if more else None,
    )


@router.get(
    "/backfills/{backfill_id}", response_model=BackfillOut, summary="One backfill and its progress"
)
def get_backfill(
    request: Request,
    backfill_id: BackfillId,
    key: Annotated[ApiKey, Depends(require(JOBS_READ))],
) -> BackfillOut:
    """Progress is read from the slots' jobs now: queued, running, completed, failed."""
    with transaction(api_state(request).engine) as conn:
        backfill, progress = service.get(conn, backfill_id, tenant_scope(key))
    return BackfillOut.of(backfill, progress)


@router.post(
    "/backfills/{backfill_id}/cancel",
    response_model=BackfillCancelled,
    summary="Stop creating a backfill's jobs; optionally cancel those not yet claimed",
)
def cancel_backfill(
    request: Request,
    backfill_id: BackfillId,
    key: Annotated[ApiKey, Depends(require(JOBS_WRITE))],
    body: BackfillCancelIn | None = None,
) -> BackfillCancelled:
    """Cancelling twice is harmless; jobs already claimed or running are left to finish."""
    cancel_queued = body.cancel_queued if body is not None else False
    with transaction(api_state(request).engine) as conn:
        backfill, cancelled = service.cancel(
            conn,
            backfill_id,
            tenant_scope(key),
            cancel_queued=cancel_queued,
            actor=actor(key),
            origin=origin_of(request),
        )
        progress = BackfillRepository(conn).progress(backfill)
    return BackfillCancelled(
        backfill=BackfillOut.of(backfill, progress), cancelled_job_ids=cancelled
    )


@router.get(
    "/backfill-sources",
    response_model=BackfillSourceList,
    summary="Backfill sources with their watermark",
)
def list_sources(
    request: Request,
    key: Annotated[ApiKey, Depends(require(JOBS_READ))],
    tenant: AdminTenant = None,
    name: Annotated[Name | None, Query(description="The source's exact name.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> BackfillSourceList:
    """The watermark is the latest slot such that it and every earlier slot completed; the
    leader moves it from finished slot jobs each tick."""
    scope = tenant_scope(key) if tenant is None else acting_tenant(key, tenant)
    with transaction(api_state(request).engine) as conn:
        sources = BackfillRepository(conn).sources(scope, name, limit)
    return BackfillSourceList(items=[BackfillSourceOut.of(s) for s in sources])
