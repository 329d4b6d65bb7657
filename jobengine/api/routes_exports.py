"""``/api/v1/exports/provenance``: a provenance export (``jobengine.audit.export``) streamed
as NDJSON, the same bytes ``jobengine audit export`` writes for the same selection and bound.

Admin keys export any selection; any other key needs ``audit:read`` and exports only its own
tenant: another tenant's run answers 404, as the run routes do, so nothing says it exists.
A client that lost a download asks again with the same ``asOf`` (the header's) and
``after``/``afterHash``, the last line it holds; the lines up to it are recomputed, checked
against that hash and not sent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from jobengine.api.auth import acting_tenant, require
from jobengine.api.keys import AUDIT_READ, ApiKey
from jobengine.api.schemas import ERROR_RESPONSES, ErrorOut
from jobengine.api.state import api_state
from jobengine.audit.chain import Chain
from jobengine.audit.export import (
    AsOf,
    Exporter,
    Position,
    Selection,
    run_tenant,
    stream,
    stream_after,
    take_bound,
)
from jobengine.errors import ValidationError
from jobengine.runs.errors import RunNotFound

NDJSON = "application/x-ndjson"

router = APIRouter(prefix="/api/v1/exports", tags=["exports"], responses=ERROR_RESPONSES)


def _aware(name: str, value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValidationError(
            f"{name} has no timezone offset",
            hint=f"Add one, e.g. {value.isoformat()}Z: whose clock it meant decides the range.",
        )
    return value


def _selection(
    key: ApiKey,
    run_owner: str | None,
    tenant: str | None,
    run_id: int | None,
    since: datetime | None,
    until: datetime | None,
) -> Selection:
    scoped = tenant if key.is_admin else acting_tenant(key, tenant)
    if run_id is not None and not key.is_admin and run_owner != key.tenant_id:
        raise RunNotFound(run_id)
    return Selection(
        scoped,
        run_id,
        _aware("since", since),
        _aware("until", until),
        own_entries_only=not key.is_admin,
    )


@router.get(
    "/provenance",
    summary="A provenance export: jobs, histories, outcomes, audit entries (hash-chained NDJSON)",
    response_class=StreamingResponse,
    responses={
        200: {"content": {NDJSON: {}}, "description": "One JSON object a line; see the README."},
        409: {"model": ErrorOut, "description": "afterHash does not match that line."},
    },
)
def provenance(
    request: Request,
    key: Annotated[ApiKey, Depends(require(AUDIT_READ))],
    tenant: Annotated[str | None, Query(description="Only this tenant's jobs.")] = None,
    run_id: Annotated[
        int | None, Query(alias="runId", ge=1, le=2**63 - 1, description="Only this run's jobs.")
    ] = None,
    since: Annotated[datetime | None, Query(description="Jobs created at or after.")] = None,
    until: Annotated[datetime | None, Query(description="Jobs created before.")] = None,
    as_of: Annotated[
        str | None,
        Query(alias="asOf", description="An earlier export's bound (its header's asOf token)."),
    ] = None,
    after: Annotated[
        int | None, Query(ge=0, description="Continue after this line (its seq); with afterHash.")
    ] = None,
    after_hash: Annotated[
        str | None,
        Query(alias="afterHash", description="The sha256 hex of that line's bytes."),
    ] = None,
) -> StreamingResponse:
    state = api_state(request)
    owner = None if run_id is None else run_tenant(state.engine, run_id)
    selection = _selection(key, owner, tenant, run_id, since, until)
    if (after is None) != (after_hash is None):
        raise ValidationError(
            "after and afterHash go together",
            hint="Send the seq of the last line you hold and the sha256 hex of its bytes.",
        )
    if after is not None and as_of is None:
        raise ValidationError(
            "continuing an export needs its bound",
            hint="Send asOf as the export's header gave it (e.g. j120.h560.a33.f4).",
        )
    bound = AsOf.parse(as_of) if as_of is not None else take_bound(state.engine)
    exporter = Exporter(state.engine, selection, bound)
    if after is not None and after_hash is not None:
        lines = stream_after(exporter, after, after_hash)
    else:
        lines = stream(exporter, Chain(), Position())
    return StreamingResponse(
        lines,
        media_type=NDJSON,
        headers={"X-Export-As-Of": bound.token, "Cache-Control": "no-store"},
    )
