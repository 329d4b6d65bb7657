"""The schedules' part of the client: its models and the calls both clients send, so the sync
and async ones cannot drift apart. Field names are REST's, in snake_case."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobengine.client._base import Call
from jobengine.client._models import _time
from jobengine.client._runs import RunJobRequest


@dataclass(frozen=True, slots=True)
class ScheduledRun:
    """The run each slot creates: a ``RunRequest`` without its project (the schedule's) or
    idempotency key (the slot's). Its jobs start at the slot: leave their ``not_before``."""

    name: str
    jobs: Sequence[RunJobRequest]
    edges: Sequence[tuple[str, str]] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "jobs": [job.to_json() for job in self.jobs],
            "edges": [{"parent": parent, "child": child} for parent, child in self.edges],
        }


@dataclass(frozen=True, slots=True)
class ScheduleRequest:
    """A schedule to create: a cron expression (5 fields, in ``zone``) or an interval, and
    what each slot creates: the job of ``job_type`` (with ``payload``, ``queue``, …) or
    ``run``. ``None`` fields are left to the server's defaults."""

    name: str
    job_type: str | None = None
    payload: Any = field(default_factory=dict)
    project_id: str = "default"
    cron: str | None = None
    interval_seconds: int | None = None
    zone: str = "UTC"
    queue: str | None = None
    priority: int | None = None
    retry_policy: dict[str, Any] | None = None
    time_limit_seconds: float | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None
    jitter_seconds: int | None = None
    overlap: str | None = None
    """``skip`` (the default), ``buffer_one`` or ``allow``."""
    catch_up_seconds: int | None = None
    paused: bool = False
    run: ScheduledRun | None = None
    """Instead of ``job_type``: a run (a workflow) per slot."""

    def _job(self) -> dict[str, Any] | None:
        if self.job_type is None:
            return None
        job: dict[str, Any] = {"type": self.job_type, "payload": self.payload}
        job_options = {
            "queue": self.queue,
            "priority": self.priority,
            "retryPolicy": self.retry_policy,
            "timeLimitSeconds": self.time_limit_seconds,
        }
        job.update({k: v for k, v in job_options.items() if v is not None})
        return job

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "projectId": self.project_id,
            "cron": self.cron,
            "intervalSeconds": self.interval_seconds,
            "zone": self.zone,
            "paused": self.paused,
        }
        what = {"job": self._job(), "run": None if self.run is None else self.run.to_json()}
        body.update({k: v for k, v in what.items() if v is not None})
        options = {
            "startAt": None if self.start_at is None else self.start_at.isoformat(),
            "endAt": None if self.end_at is None else self.end_at.isoformat(),
            "jitterSeconds": self.jitter_seconds,
            "overlap": self.overlap,
            "catchUpSeconds": self.catch_up_seconds,
        }
        body.update({k: v for k, v in options.items() if v is not None})
        return body


@dataclass(frozen=True, slots=True)
class Schedule:
    """A schedule as ``/api/v1/schedules`` shows it."""

    id: int
    tenant_id: str
    project_id: str
    name: str
    cron: str | None
    interval_seconds: int | None
    zone: str
    job: dict[str, Any] | None
    """The job each slot creates, in REST's fields (``type``, ``payload``, ``queue``, …)."""
    run: dict[str, Any] | None
    """Or the run each slot creates, in REST's fields (``name``, ``jobs``, ``edges``)."""
    start_at: datetime | None
    end_at: datetime | None
    jitter_seconds: int
    overlap: str
    catch_up_seconds: int
    paused: bool
    next_slot_at: datetime | None
    last_slot_at: datetime | None
    last_job_id: int | None
    last_run_id: int | None
    buffered_slot_at: datetime | None
    fired_count: int
    skipped_count: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Schedule:
        created, updated = _time(data["createdAt"]), _time(data["updatedAt"])
        assert created is not None and updated is not None
        return cls(
            id=int(data["id"]),
            tenant_id=data["tenantId"],
            project_id=data["projectId"],
            name=data["name"],
            cron=data.get("cron"),
            interval_seconds=data.get("intervalSeconds"),
            zone=data["zone"],
            job=None if data.get("job") is None else dict(data["job"]),
            run=None if data.get("run") is None else dict(data["run"]),
            start_at=_time(data.get("startAt")),
            end_at=_time(data.get("endAt")),
            jitter_seconds=int(data["jitterSeconds"]),
            overlap=data["overlap"],
            catch_up_seconds=int(data["catchUpSeconds"]),
            paused=bool(data["paused"]),
            next_slot_at=_time(data.get("nextSlotAt")),
            last_slot_at=_time(data.get("lastSlotAt")),
            last_job_id=data.get("lastJobId"),
            last_run_id=data.get("lastRunId"),
            buffered_slot_at=_time(data.get("bufferedSlotAt")),
            fired_count=int(data["firedCount"]),
            skipped_count=int(data["skippedCount"]),
            created_at=created,
            updated_at=updated,
        )


@dataclass(frozen=True, slots=True)
class ScheduleSlot:
    """One slot as the leader decided it: ``fired`` (``job_id``, or ``run_id`` for a run
    schedule), ``skipped`` (``reason``: missed, overlap, refused: CODE) or ``buffered``."""

    slot_at: datetime
    outcome: str
    reason: str | None
    job_id: int | None
    decided_at: datetime | None
    run_id: int | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScheduleSlot:
        slot = _time(data["slotAt"])
        assert slot is not None
        return cls(
            slot_at=slot,
            outcome=data["outcome"],
            reason=data.get("reason"),
            job_id=data.get("jobId"),
            decided_at=_time(data.get("decidedAt")),
            run_id=data.get("runId"),
        )


def schedule_path(schedule_id: int | None = None, suffix: str = "") -> str:
    return "/schedules" if schedule_id is None else f"/schedules/{schedule_id}{suffix}"


def create_call(request: ScheduleRequest) -> Call:
    return Call("POST", schedule_path(), json=request.to_json())


def list_call(cursor: str | None, limit: int) -> Call:
    params = {"limit": str(limit)} | ({"cursor": cursor} if cursor else {})
    return Call("GET", schedule_path(), params=params, repeatable=True)


def update_call(schedule_id: int, changes: Mapping[str, Any]) -> Call:
    """``changes`` in REST's fields (``cron``, ``intervalSeconds``, ``job``, ``overlap``…)."""
    return Call("PATCH", schedule_path(schedule_id), json=dict(changes), repeatable=True)


def pause_call(schedule_id: int, paused: bool) -> Call:
    suffix = "/pause" if paused else "/resume"
    return Call("POST", schedule_path(schedule_id, suffix), repeatable=True)


def slots_call(schedule_id: int, limit: int) -> Call:
    path = schedule_path(schedule_id, "/slots")
    return Call("GET", path, params={"limit": str(limit)}, repeatable=True)


def parse_schedules(body: Mapping[str, Any]) -> tuple[list[Schedule], str | None]:
    return [Schedule.from_json(item) for item in body["items"]], body.get("nextCursor")
