"""``GET /api/v1/audit``: the audit log, newest first, a page at a time.

Admin keys read every entry; a key with ``audit:read`` reads only its own tenant's (the
tenant filter is forced to it), without the callers' addresses, which are the operator's
business. Fleet-wide entries (no tenant) are for admin keys only.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import AwareDatetime

from jobengine.api.auth import acting_tenant, require
from jobengine.api.cursors import AUDIT_CURSOR, decode_cursor, encode_cursor
from jobengine.api.keys import AUDIT_READ, ApiKey
from jobengine.api.schemas import ERROR_RESPONSES, Name
from jobengine.api.schemas_audit import AuditEntryOut, AuditList
from jobengine.api.state import api_state
from jobengine.audit import action as audited_action
from jobengine.audit.log import AuditFilter, list_entries
from jobengine.store.database import transaction

router = APIRouter(prefix="/api/v1", tags=["audit"], responses=ERROR_RESPONSES)

Text = Annotated[str | None, Query(min_length=1, max_length=300)]


@router.get("/audit", response_model=AuditList, summary="The audit log, newest first")
def list_audit(
    request: Request,
    key: Annotated[ApiKey, Depends(require(AUDIT_READ))],
    actor: Text = None,
    action: Annotated[Name | None, Query(description="e.g. dlq.replay")] = None,
    object_kind: Annotated[Name | None, Query(alias="objectKind")] = None,
    object_id: Annotated[str | None, Query(alias="objectId", max_length=300)] = None,
    outcome: Literal["done", "refused"] | None = None,
    since: Annotated[AwareDatetime | None, Query(description="Inclusive, ISO 8601.")] = None,
    until: Annotated[AwareDatetime | None, Query(description="Exclusive.")] = None,
    job_id: Annotated[int | None, Query(alias="jobId", ge=1, le=2**63 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
    tenant: Annotated[
        str | None,
        Header(alias="X-Tenant-Id", max_length=200, description="Admin keys: one tenant only."),
    ] = None,
) -> AuditList:
    if action is not None:
        audited_action(action)  # an unknown name is refused, naming the list
    flt = AuditFilter(
        tenant=None if key.is_admin and tenant is None else acting_tenant(key, tenant),
        actor=actor,
        action=action,
        object_kind=object_kind,
        object_id=object_id,
        outcome=outcome,
        since=since,
        until=until,
        job_id=job_id,
    )
    before = decode_cursor(cursor, AUDIT_CURSOR) if cursor else None
    with transaction(api_state(request).engine) as conn:
        page = list_entries(conn, flt, before_id=before, limit=limit)
    return AuditList(
        items=[AuditEntryOut.of(e, show_client=key.is_admin) for e in page.entries],
        next_cursor=(
            encode_cursor(page.next_before, AUDIT_CURSOR) if page.next_before is not None else None
        ),
    )
