"""What a backfill is, as the rest of the engine sees it (not ORM rows)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class BackfillStatus(StrEnum):
    CREATING = "creating"
    """The leader still creates its slots' jobs, a batch a tick (``maintenance.backfiller``)."""
    CREATED = "created"
    """Every slot of the range has its job (made by this backfill or found already there)."""
    CANCELLED = "cancelled"
    """Stopped by a user; slots created before stay, and run unless their jobs were cancelled."""


@dataclass(frozen=True, slots=True)
class CadenceSpec:
    """A cron expression or an interval, in an IANA zone: what ``schedules.slots`` parses."""

    cron: str | None
    interval_seconds: int | None
    zone: str = "UTC"


@dataclass(frozen=True, slots=True)
class JobTemplate:
    """The job each slot gets, created for its slot (``ctx.scheduled_for``)."""

    type: str
    payload: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int = 0


@dataclass(frozen=True, slots=True)
class Pacing:
    max_in_flight: int | None = None
    """At most this many of the backfill's jobs not yet final at once."""
    max_per_second: float | None = None
    """At most this many jobs created per second since the backfill was created, on average."""


@dataclass(frozen=True, slots=True)
class BackfillSpec:
    tenant_id: str
    project_id: str
    source: str
    cadence: CadenceSpec
    start: datetime
    end: datetime
    """Exclusive: the slots are those at or after ``start`` and before ``end``."""
    job: JobTemplate
    pacing: Pacing = Pacing()


@dataclass(frozen=True, slots=True)
class Source:
    id: int
    tenant_id: str
    project_id: str
    name: str
    cadence: CadenceSpec
    watermark: datetime | None
    """The latest slot such that it and every earlier slot of the source completed."""
    held_at: datetime | None
    """The first slot after the watermark that holds it: not completed yet, or not created."""
    held_by_job: int | None
    held_by_status: str | None
    last_slot: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Progress:
    """The range's slots by what their jobs are now, read from the jobs themselves."""

    total: int
    created: int
    """Jobs this backfill created."""
    existing: int
    """Slots whose job already existed (an earlier or overlapping backfill made it)."""
    queued: int = 0
    running: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0


@dataclass(frozen=True, slots=True)
class Backfill:
    id: int
    source: str
    source_id: int
    tenant_id: str
    project_id: str
    cadence: CadenceSpec
    start: datetime
    end: datetime
    job: JobTemplate
    pacing: Pacing
    status: BackfillStatus
    slots_total: int
    slots_created: int
    slots_existing: int
    first_slot: datetime | None
    last_slot: datetime | None
    cursor: datetime | None
    """The next slot to create; None once every slot is created."""
    last_error: str | None
    """Why the leader's last batch wrote nothing (a quota, a type gone from the catalogue)."""
    created_by: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class SlotPreview:
    at: datetime
    job_id: int | None
    """The slot's job when it exists already: a backfill would create nothing for it."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What a backfill would create: a dry run's answer, and what a real one records."""

    total: int
    first: datetime | None
    last: datetime | None
    existing: int
    preview: list[SlotPreview]
    """The first slots (``plan.PREVIEW`` of them), each with its job if it exists."""

    @property
    def new(self) -> int:
        return self.total - self.existing
