"""Runs as the client sees them: requests, typed results parsed from ``/api/v1/runs``, and the
calls both clients send, so the sync and async ones cannot drift apart.

Field names are REST's, in snake_case: ``projectId`` is ``project_id``, ``hasResult`` is
``has_result``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jobengine.client._base import Call, SSEMessage, new_idempotency_key
from jobengine.client._models import _time
from jobengine.domain.events import EventEnvelope, TimelineEvent
from jobengine.domain.run import TriggerRule
from jobengine.domain.status import JobStatus, RunStatus

RUN_STATUS_EVENT = "run.status"


@dataclass(frozen=True, slots=True)
class RunJobRequest:
    """One job of a run; ``None`` fields are left to the server (the type's queue and policy)."""

    key: str
    type: str
    payload: Any = None
    queue: str | None = None
    priority: int | None = None
    retry_policy: dict[str, Any] | None = None
    time_limit_seconds: float | None = None
    not_before: datetime | None = None
    trigger_rule: TriggerRule | str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"key": self.key, "type": self.type}
        optional = {
            "payload": self.payload,
            "queue": self.queue,
            "priority": self.priority,
            "retryPolicy": self.retry_policy,
            "timeLimitSeconds": self.time_limit_seconds,
            "notBefore": None if self.not_before is None else self.not_before.isoformat(),
            "triggerRule": None if self.trigger_rule is None else TriggerRule(self.trigger_rule),
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return body


@dataclass(frozen=True, slots=True)
class RunRequest:
    """A run to submit: its jobs, and edges as ``(parent key, child key)``."""

    name: str
    project_id: str
    jobs: Sequence[RunJobRequest]
    edges: Sequence[tuple[str, str]] = ()
    idempotency_key: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "projectId": self.project_id,
            "jobs": [job.to_json() for job in self.jobs],
            "edges": [{"parent": parent, "child": child} for parent, child in self.edges],
        }


def _required_time(value: str) -> datetime:
    parsed = _time(value)
    assert parsed is not None
    return parsed


@dataclass(frozen=True, slots=True)
class Run:
    id: int
    tenant_id: str
    project_id: str
    name: str
    status: RunStatus
    jobs_total: int
    jobs_completed: int
    jobs_failed: int
    jobs_cancelled: int
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    cancel_requested_at: datetime | None

    @property
    def is_final(self) -> bool:
        """Every job is final; a replayed dead letter can still take the run back to running."""
        return self.status is not RunStatus.RUNNING

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Run:
        return cls(
            id=int(data["id"]),
            tenant_id=data["tenantId"],
            project_id=data["projectId"],
            name=data["name"],
            status=RunStatus(data["status"]),
            jobs_total=data["jobsTotal"],
            jobs_completed=data["jobsCompleted"],
            jobs_failed=data["jobsFailed"],
            jobs_cancelled=data["jobsCancelled"],
            created_at=_required_time(data["createdAt"]),
            updated_at=_required_time(data["updatedAt"]),
            completed_at=_time(data.get("completedAt")),
            cancel_requested_at=_time(data.get("cancelRequestedAt")),
        )


@dataclass(frozen=True, slots=True)
class RunJob:
    """A job as its run's graph shows it; ``get(id)`` gives the whole job (payload, result)."""

    id: int
    key: str
    type: str
    queue: str
    status: JobStatus
    attempt: int
    trigger_rule: TriggerRule
    has_result: bool
    last_error: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunJob:
        return cls(
            id=int(data["id"]),
            key=data["key"],
            type=data["type"],
            queue=data["queue"],
            status=JobStatus(data["status"]),
            attempt=data["attempt"],
            trigger_rule=TriggerRule(data["triggerRule"]),
            has_result=data["hasResult"],
            last_error=data.get("lastError"),
            created_at=_required_time(data["createdAt"]),
            started_at=_time(data.get("startedAt")),
            completed_at=_time(data.get("completedAt")),
        )


@dataclass(frozen=True, slots=True)
class RunEdge:
    parent: str
    child: str
    parent_id: int
    child_id: int


@dataclass(frozen=True, slots=True)
class RunDetail:
    """A run with its graph, as ``GET /runs/{id}`` answers it."""

    run: Run
    jobs: list[RunJob]
    edges: list[RunEdge]
    cancelled_job_ids: list[int] | None = None
    """Only after ``cancel_run``: the jobs that cancel moved (empty: it was already final)."""

    def job(self, key: str) -> RunJob:
        """The run's job named ``key``; KeyError if the run has none."""
        for job in self.jobs:
            if job.key == key:
                return job
        raise KeyError(key)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunDetail:
        cancelled = data.get("cancelledJobIds")
        return cls(
            run=Run.from_json(data),
            jobs=[RunJob.from_json(item) for item in data["jobs"]],
            edges=[
                RunEdge(e["parent"], e["child"], int(e["parentId"]), int(e["childId"]))
                for e in data["edges"]
            ],
            cancelled_job_ids=None if cancelled is None else [int(i) for i in cancelled],
        )


@dataclass(frozen=True, slots=True)
class RunPage:
    items: list[Run]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class RunEvent:
    """One message of a run's stream: a job's event (``envelope``) or the run's new status
    (``run``), for ``type`` ``job.transition`` / ``job.progress`` or ``run.status``."""

    id: str
    type: str
    envelope: EventEnvelope | None = None
    run: Run | None = None

    @property
    def job_id(self) -> int | None:
        return None if self.envelope is None else self.envelope.event.job_id

    @property
    def to_status(self) -> JobStatus | None:
        """The state a job's transition entered; None for progress and run events."""
        event = None if self.envelope is None else self.envelope.event
        return event.to_status if isinstance(event, TimelineEvent) else None


def run_event(message: SSEMessage) -> RunEvent:
    if message.event == RUN_STATUS_EVENT:
        run = Run.from_json(json.loads(message.data))
        return RunEvent(id=message.id or "", type=message.event, run=run)
    envelope = EventEnvelope.model_validate_json(message.data)
    return RunEvent(id=message.id or str(envelope.id), type=message.event, envelope=envelope)


def create_run_call(request: RunRequest) -> Call:
    """Always keyed (the caller's key or a fresh one), so a retry after a lost response
    returns the run the first try made instead of submitting it twice."""
    key = request.idempotency_key or new_idempotency_key()
    return Call(
        "POST", "/runs", json=request.to_json(), headers={"Idempotency-Key": key}, repeatable=True
    )


def run_path(run_id: int, suffix: str = "") -> str:
    return f"/runs/{int(run_id)}{suffix}"


def list_runs_params(
    *,
    status: RunStatus | str | None,
    project_id: str | None,
    name: str | None,
    limit: int | None,
    cursor: str | None,
) -> dict[str, str]:
    given: dict[str, Any] = {
        "status": None if status is None else RunStatus(status).value,
        "projectId": project_id,
        "name": name,
        "limit": limit,
        "cursor": cursor,
    }
    return {k: str(v) for k, v in given.items() if v is not None}


def parse_run_page(body: Mapping[str, Any]) -> RunPage:
    return RunPage(
        items=[Run.from_json(item) for item in body["items"]], next_cursor=body.get("nextCursor")
    )
