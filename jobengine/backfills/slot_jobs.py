"""The job a slot gets: the backfill's template, its payload carrying the slot time.

The slot is in the payload (``model.SLOT_FIELD``) because a job has no field of its own for
it yet; a handler reads ``payload["scheduledFor"]`` (ISO 8601, UTC).
"""

from __future__ import annotations

from datetime import UTC, datetime

from jobengine.backfills.model import SLOT_FIELD, JobTemplate
from jobengine.domain.job import NewJob


def slot_job(tenant_id: str, project_id: str, template: JobTemplate, slot: datetime) -> NewJob:
    return NewJob(
        type=template.type,
        payload={**template.payload, SLOT_FIELD: slot.astimezone(UTC).isoformat()},
        tenant_id=tenant_id,
        project_id=project_id,
        queue=template.queue or "default",
        priority=template.priority,
    )
