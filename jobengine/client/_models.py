"""What the REST API returns, as typed values, parsed from its camelCase JSON in one place.

The status enum and the event envelope are the engine's own, so a client and the server can
never disagree about what a state or an event is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobengine.domain.events import EventEnvelope, ProgressEvent, TimelineEvent
from jobengine.domain.status import FINAL_STATES, JobStatus

__all__ = [
    "FINAL_STATES",
    "Artifact",
    "Downloaded",
    "HistoryEntry",
    "Job",
    "JobEvent",
    "JobPage",
    "JobRequest",
    "JobStatus",
    "JobType",
]


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    tenant_id: str
    project_id: str
    type: str
    queue: str
    priority: int
    status: JobStatus
    attempt: int
    payload: Any
    progress: dict[str, Any] | None
    result: Any
    last_error: dict[str, Any] | None
    not_before: datetime | None
    created_at: datetime
    updated_at: datetime
    scheduled_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    scheduled_for: datetime | None = None
    """The schedule's or backfill's slot the job was created for."""

    @property
    def is_final(self) -> bool:
        """Final now; only ``failed`` can ever be left, by a dead-letter replay or a retry."""
        return self.status in FINAL_STATES

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Job:
        created = _time(data["createdAt"])
        updated = _time(data["updatedAt"])
        assert created is not None and updated is not None
        return cls(
            id=int(data["id"]),
            tenant_id=data["tenantId"],
            project_id=data["projectId"],
            type=data["type"],
            queue=data["queue"],
            priority=data["priority"],
            status=JobStatus(data["status"]),
            attempt=data["attempt"],
            payload=data.get("payload"),
            progress=data.get("progress"),
            result=data.get("result"),
            last_error=data.get("lastError"),
            not_before=_time(data.get("notBefore")),
            created_at=created,
            updated_at=updated,
            scheduled_at=_time(data.get("scheduledAt")),
            started_at=_time(data.get("startedAt")),
            completed_at=_time(data.get("completedAt")),
            scheduled_for=_time(data.get("scheduledFor")),
        )


@dataclass(frozen=True, slots=True)
class JobPage:
    items: list[Job]
    next_cursor: str | None
    """Opaque; pass it back for the next page. None when this page was the last."""


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One transition of a job, as the audit trail keeps it."""

    id: int
    from_status: JobStatus | None
    to_status: JobStatus
    at: datetime
    actor: str
    reason: str | None
    attempt: int
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HistoryEntry:
        at = _time(data["at"])
        assert at is not None
        source = data.get("fromStatus")
        return cls(
            id=int(data["id"]),
            from_status=None if source is None else JobStatus(source),
            to_status=JobStatus(data["toStatus"]),
            at=at,
            actor=data["actor"],
            reason=data.get("reason"),
            attempt=data["attempt"],
            details=data.get("details") or {},
        )


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One message of a job's event stream."""

    id: str
    """The stream's resume point (``<txid>-<eventId>``), sent back as ``Last-Event-ID``."""
    type: str
    """``job.transition`` or ``job.progress``."""
    envelope: EventEnvelope

    @property
    def to_status(self) -> JobStatus | None:
        """The state a transition entered; None for progress."""
        event = self.envelope.event
        return event.to_status if isinstance(event, TimelineEvent) else None

    @property
    def progress(self) -> dict[str, Any] | None:
        event = self.envelope.event
        return event.progress if isinstance(event, ProgressEvent) else None

    @property
    def is_final(self) -> bool:
        return self.to_status in FINAL_STATES


@dataclass(frozen=True, slots=True)
class JobRequest:
    """One job to create; ``None`` fields are left to the server's defaults (the type's queue,
    retry policy and time limit)."""

    type: str
    project_id: str
    payload: Any = None
    queue: str | None = None
    priority: int | None = None
    not_before: datetime | None = None
    retry_policy: dict[str, Any] | None = None
    time_limit_seconds: float | None = None
    idempotency_key: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The API's camelCase body; the idempotency key travels in a header for one job and
        in the body (``idempotencyKey``) in a batch, so the caller adds it."""
        body: dict[str, Any] = {"type": self.type, "projectId": self.project_id}
        optional = {
            "payload": self.payload,
            "queue": self.queue,
            "priority": self.priority,
            "notBefore": None if self.not_before is None else self.not_before.isoformat(),
            "retryPolicy": self.retry_policy,
            "timeLimitSeconds": self.time_limit_seconds,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return body


@dataclass(frozen=True, slots=True)
class JobType:
    """A job type as the fleet's catalogue holds it: what a producer that knows the type only
    by name needs to submit it (its queue, defaults and the JSON Schema its payload must fit)."""

    name: str
    queue: str
    retry_policy: dict[str, Any]
    time_limit_seconds: float | None
    needs_network: bool
    runs_commands: bool
    description: str
    payload_schema: dict[str, Any] | None
    definition_hash: str
    version: int
    declared_by: str
    updated_at: datetime | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobType:
        return cls(
            name=data["name"],
            queue=data["queue"],
            retry_policy=dict(data["retryPolicy"]),
            time_limit_seconds=data.get("timeLimitSeconds"),
            needs_network=data["needsNetwork"],
            runs_commands=data["runsCommands"],
            description=data["description"],
            payload_schema=data.get("payloadSchema"),
            definition_hash=data["definitionHash"],
            version=data["version"],
            declared_by=data["declaredBy"],
            updated_at=_time(data.get("updatedAt")),
        )


# ---- artifacts (issue 13) ----


@dataclass(frozen=True, slots=True)
class Artifact:
    """A file or blob a handler attached to its job; ``sha256`` is also its download's ETag."""

    job_id: int
    run_id: int | None
    name: str
    content_type: str
    size_bytes: int
    sha256: str
    created_at: datetime

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Artifact:
        created = _time(data["createdAt"])
        assert created is not None
        return cls(
            job_id=int(data["jobId"]),
            run_id=data.get("runId"),
            name=data["name"],
            content_type=data["contentType"],
            size_bytes=int(data["sizeBytes"]),
            sha256=data["sha256"],
            created_at=created,
        )


@dataclass(frozen=True, slots=True)
class Downloaded:
    """An artifact as received, its size and sha256 checked against the server's."""

    name: str
    content_type: str
    size_bytes: int
    sha256: str
    path: str | None
    """Where it was written; None when it went to a stream the caller gave."""
