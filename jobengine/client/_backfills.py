"""Backfills as the client sees them: the request, typed results parsed from
``/api/v1/backfills`` and ``/api/v1/backfill-sources``, and the calls both clients send.

Field names are REST's, in snake_case: ``maxInFlight`` is ``max_in_flight``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobengine.client._base import Call
from jobengine.client._models import _time


@dataclass(frozen=True, slots=True)
class BackfillRequest:
    """A source's slots from ``start`` (included) to ``end`` (excluded), one job each; give
    ``cron`` or ``interval_seconds``."""

    source: str
    start: datetime
    end: datetime
    job_type: str
    project_id: str = "default"
    cron: str | None = None
    interval_seconds: int | None = None
    zone: str = "UTC"
    payload: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int = 0
    max_in_flight: int | None = None
    max_per_second: float | None = None

    def to_json(self, *, dry_run: bool) -> dict[str, Any]:
        job: dict[str, Any] = {"type": self.job_type, "payload": self.payload}
        if self.queue is not None:
            job["queue"] = self.queue
        if self.priority:
            job["priority"] = self.priority
        body: dict[str, Any] = {
            "source": self.source,
            "projectId": self.project_id,
            "zone": self.zone,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "job": job,
            "dryRun": dry_run,
        }
        optional = {
            "cron": self.cron,
            "intervalSeconds": self.interval_seconds,
            "maxInFlight": self.max_in_flight,
            "maxPerSecond": self.max_per_second,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return body


@dataclass(frozen=True, slots=True)
class BackfillProgress:
    total: int
    created: int
    existing: int
    queued: int
    running: int
    completed: int
    failed: int
    cancelled: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BackfillProgress:
        return cls(
            total=int(data["total"]),
            created=int(data["created"]),
            existing=int(data["existing"]),
            queued=int(data["queued"]),
            running=int(data["running"]),
            completed=int(data["completed"]),
            failed=int(data["failed"]),
            cancelled=int(data["cancelled"]),
        )


@dataclass(frozen=True, slots=True)
class Backfill:
    id: int
    source: str
    tenant_id: str
    project_id: str
    status: str
    """``creating`` (the leader creates its jobs), ``created`` or ``cancelled``."""
    start: datetime
    end: datetime
    cursor: datetime | None
    last_error: str | None
    progress: BackfillProgress | None
    raw: dict[str, Any]
    """The whole REST object (cadence, job, pacing, times)."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Backfill:
        progress = data.get("progress")
        start, end = _time(data["start"]), _time(data["end"])
        assert start is not None and end is not None
        return cls(
            id=int(data["id"]),
            source=data["source"],
            tenant_id=data["tenantId"],
            project_id=data["projectId"],
            status=data["status"],
            start=start,
            end=end,
            cursor=_time(data.get("cursor")),
            last_error=data.get("lastError"),
            progress=None if progress is None else BackfillProgress.from_json(progress),
            raw=dict(data),
        )


@dataclass(frozen=True, slots=True)
class BackfillPlan:
    slots_total: int
    slots_existing: int
    slots_new: int
    first_slot: datetime | None
    last_slot: datetime | None
    preview: list[tuple[datetime, int | None]]
    """The first slots, each with its job id when it exists already."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BackfillPlan:
        preview = []
        for slot in data["preview"]:
            at = _time(slot["scheduledFor"])
            assert at is not None
            preview.append((at, slot.get("jobId")))
        return cls(
            slots_total=int(data["slotsTotal"]),
            slots_existing=int(data["slotsExisting"]),
            slots_new=int(data["slotsNew"]),
            first_slot=_time(data.get("firstSlot")),
            last_slot=_time(data.get("lastSlot")),
            preview=preview,
        )


@dataclass(frozen=True, slots=True)
class BackfillCreated:
    plan: BackfillPlan
    backfill: Backfill | None
    """None for a dry run."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BackfillCreated:
        made = data.get("backfill")
        return cls(
            plan=BackfillPlan.from_json(data["plan"]),
            backfill=None if made is None else Backfill.from_json(made),
        )


@dataclass(frozen=True, slots=True)
class BackfillSource:
    name: str
    tenant_id: str
    project_id: str
    watermark: datetime | None
    """The latest slot such that it and every earlier slot completed."""
    held_at: datetime | None
    held_by_job_id: int | None
    held_by_status: str | None
    last_slot: datetime | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BackfillSource:
        return cls(
            name=data["name"],
            tenant_id=data["tenantId"],
            project_id=data["projectId"],
            watermark=_time(data.get("watermark")),
            held_at=_time(data.get("heldAt")),
            held_by_job_id=data.get("heldByJobId"),
            held_by_status=data.get("heldByStatus"),
            last_slot=_time(data.get("lastSlot")),
        )


def create_backfill_call(request: BackfillRequest, *, dry_run: bool) -> Call:
    """A dry run writes nothing, so it is repeatable; a real create is not (a second one
    would create no job, but a second backfill row)."""
    return Call("POST", "/backfills", json=request.to_json(dry_run=dry_run), repeatable=dry_run)


def backfill_path(backfill_id: int, suffix: str = "") -> str:
    return f"/backfills/{int(backfill_id)}{suffix}"


def cancel_backfill_call(backfill_id: int, *, cancel_queued: bool) -> Call:
    """Cancelling twice changes nothing, so it is retried like a GET."""
    return Call(
        "POST",
        backfill_path(backfill_id, "/cancel"),
        json={"cancelQueued": cancel_queued},
        repeatable=True,
    )


def list_backfills_call(source: str | None, status: str | None, limit: int | None) -> Call:
    given = {"source": source, "status": status, "limit": limit}
    params = {k: str(v) for k, v in given.items() if v is not None}
    return Call("GET", "/backfills", params=params, repeatable=True)


def sources_call(name: str | None) -> Call:
    params = {} if name is None else {"name": name}
    return Call("GET", "/backfill-sources", params=params, repeatable=True)
