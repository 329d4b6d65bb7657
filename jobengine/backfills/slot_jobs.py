"""The job a slot gets: the backfill's template, created for its slot (``scheduled_for``,
which the handler reads as ``ctx.scheduled_for`` and REST shows as ``scheduledFor``)."""

from __future__ import annotations

from datetime import UTC, datetime

from jobengine.backfills.model import JobTemplate
from jobengine.domain.job import NewJob


def slot_job(tenant_id: str, project_id: str, template: JobTemplate, slot: datetime) -> NewJob:
    return NewJob(
        type=template.type,
        payload=template.payload,
        tenant_id=tenant_id,
        project_id=project_id,
        queue=template.queue or "default",
        priority=template.priority,
        scheduled_for=slot.astimezone(UTC),
    )
