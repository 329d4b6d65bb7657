"""Typed, versioned events: what the outbox stores and what streams and consumers read.

A ``TimelineEvent`` is the fact (a job moved from one state to another); the ``EventEnvelope``
around it carries the ordering id, the schema version and the tenant, so a consumer can resume
from an id and refuse versions it does not know.

On the wire (SSE and WebSocket ``data``) the fields are camelCase, as REST's job fields
(``toStatus``, ``tenantId``); the outbox stores them snake_case. Both spellings parse, so a
client reads a stream and a stored row with the same model.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from jobengine.domain.status import JobStatus

ENVELOPE_VERSION = 1


class TimelineEvent(BaseModel):
    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)

    job_id: int
    history_id: int
    from_status: JobStatus | None
    to_status: JobStatus
    attempt: int
    actor: str
    reason: str | None = None
    details: dict[str, Any] = {}


class ProgressEvent(BaseModel):
    """A running job reported progress (a fraction from 0 to 1 and a message)."""

    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)

    job_id: int
    attempt: int
    progress: dict[str, Any]


class EventEnvelope(BaseModel):
    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)

    id: int
    """Monotonic outbox id: the order of events and the resume point of a stream."""
    version: Literal[1] = 1
    type: Literal["job.transition", "job.progress"] = "job.transition"
    tenant_id: str
    occurred_at: datetime
    event: TimelineEvent | ProgressEvent
