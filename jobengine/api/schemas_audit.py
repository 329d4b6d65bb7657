"""The audit log's REST shapes (``GET /api/v1/audit``), as ``jobengine audit list --json``
prints them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from jobengine.api.schemas import ApiModel
from jobengine.audit.log import AuditEntry


class AuditEntryOut(ApiModel):
    id: int = Field(description="The stable order: later entries have larger ids.")
    at: datetime
    actor: str = Field(
        description="api:<key name> (<prefix>), cli:<user>@<host>, flower:<user>, celery:revoke"
    )
    surface: Literal["rest", "cli", "console", "flower", "worker", "system"]
    action: str = Field(description="One of the audited actions, e.g. key.revoke, dlq.replay.")
    object_kind: str
    object_id: str | None
    tenant_id: str | None = Field(description="None: a fleet-wide act.")
    client_addr: str | None = Field(description="The caller's address; shown to admin keys only.")
    outcome: Literal["done", "refused"]
    reason: str | None = Field(description="The error code of a refusal.")
    detail: dict[str, Any] = Field(description="What changed; never a secret.")
    job_ids: list[int] = Field(description="The first 100 jobs the act touched, by id.")
    more_jobs: bool = Field(description="It touched more: filter by jobId to find each one.")

    @classmethod
    def of(cls, entry: AuditEntry, *, show_client: bool) -> AuditEntryOut:
        return cls(
            id=entry.id,
            at=entry.at,
            actor=entry.actor,
            surface=entry.surface,
            action=entry.action,
            object_kind=entry.object_kind,
            object_id=entry.object_id,
            tenant_id=entry.tenant,
            client_addr=entry.client_addr if show_client else None,
            outcome=entry.outcome,
            reason=entry.reason,
            detail=entry.detail,
            job_ids=list(entry.job_ids),
            more_jobs=entry.more_jobs,
        )


class AuditList(ApiModel):
    items: list[AuditEntryOut]
    next_cursor: str | None = Field(description="Older entries: pass back as cursor.")
