"""The JSON shapes of ``/api/v1/backfills`` and ``/api/v1/backfill-sources`` (camelCase, as
the job routes); the CLI's ``--json`` prints these same models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import AwareDatetime, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from jobengine.api.schemas import ApiModel, Name, QueueName, RequestModel, payload_storable, utc
from jobengine.backfills.model import (
    Backfill,
    BackfillSpec,
    BackfillStatus,
    CadenceSpec,
    JobTemplate,
    Pacing,
    Plan,
    Progress,
    Source,
)
from jobengine.backfills.plan import MAX_SLOTS


class SlotJobIn(RequestModel):
    """The job each slot gets, the same for every slot; each is created for its slot (the
    job's ``scheduledFor``, the handler's ``ctx.scheduled_for``)."""

    type: Name = Field(description="A registered job type, e.g. noop.")
    payload: dict[str, Any] = Field(default_factory=dict, description="A JSON object.")
    queue: QueueName | None = Field(None, description="Default: the type's own queue.")
    priority: int = Field(0, ge=0, le=9)

    @field_validator("payload")
    @classmethod
    def _payload_storable(cls, value: Any) -> Any:
        return payload_storable(value)


BACKFILL_CREATE_EXAMPLE: dict[str, Any] = {
    "source": "orders-hourly",
    "projectId": "shop",
    "cron": "0 * * * *",
    "zone": "Europe/Berlin",
    "start": "2026-01-01T00:00:00Z",
    "end": "2026-02-01T00:00:00Z",
    "job": {"type": "noop", "payload": {"table": "orders"}},
    "maxInFlight": 50,
    "dryRun": True,
}


class BackfillCreate(RequestModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        json_schema_extra={"examples": [BACKFILL_CREATE_EXAMPLE]},
    )

    source: Name = Field(description="The series the slots belong to; its watermark is kept.")
    project_id: Name = "default"
    cron: str | None = Field(None, max_length=200, description="Five-field cron, in ``zone``.")
    interval_seconds: int | None = Field(None, ge=1, le=366 * 86400)
    zone: str = Field("UTC", min_length=1, max_length=64, description="An IANA time zone.")
    start: AwareDatetime = Field(description="The first slot at or after it is included.")
    end: AwareDatetime = Field(description="Excluded: slots before it.")
    job: SlotJobIn
    max_in_flight: int | None = Field(
        None, ge=1, description="At most this many of its jobs not final at once."
    )
    max_per_second: float | None = Field(
        None, gt=0, description="At most this many jobs created a second, on average."
    )
    dry_run: bool = Field(False, description="Count and list the slots; write nothing.")

    def to_spec(self, tenant_id: str) -> BackfillSpec:
        return BackfillSpec(
            tenant_id=tenant_id,
            project_id=self.project_id,
            source=self.source,
            cadence=CadenceSpec(self.cron, self.interval_seconds, self.zone),
            start=self.start,
            end=self.end,
            job=JobTemplate(
                type=self.job.type,
                payload=self.job.payload,
                queue=self.job.queue,
                priority=self.job.priority,
            ),
            pacing=Pacing(self.max_in_flight, self.max_per_second),
        )


class SlotJobOut(ApiModel):
    type: str
    payload: dict[str, Any]
    queue: str | None
    priority: int


class ProgressOut(ApiModel):
    total: int = Field(description="Slots in the range.")
    created: int = Field(description="Jobs this backfill created.")
    existing: int = Field(description="Slots whose job already existed.")
    queued: int
    running: int
    completed: int
    failed: int
    cancelled: int

    @classmethod
    def of(cls, progress: Progress) -> ProgressOut:
        return cls(
            total=progress.total,
            created=progress.created,
            existing=progress.existing,
            queued=progress.queued,
            running=progress.running,
            completed=progress.completed,
            failed=progress.failed,
            cancelled=progress.cancelled,
        )


class BackfillOut(ApiModel):
    id: int
    source: str
    tenant_id: str
    project_id: str
    cron: str | None
    interval_seconds: int | None
    zone: str
    start: datetime
    end: datetime
    job: SlotJobOut
    max_in_flight: int | None
    max_per_second: float | None
    status: BackfillStatus
    cursor: datetime | None = Field(description="The next slot to create; none once all are.")
    first_slot: datetime | None
    last_slot: datetime | None
    last_error: str | None = Field(description="Why the leader's last batch wrote nothing.")
    created_by: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    progress: ProgressOut | None = Field(None, description="In a single backfill's answer.")

    @classmethod
    def of(cls, b: Backfill, progress: Progress | None = None) -> BackfillOut:
        return cls(
            id=b.id,
            source=b.source,
            tenant_id=b.tenant_id,
            project_id=b.project_id,
            cron=b.cadence.cron,
            interval_seconds=b.cadence.interval_seconds,
            zone=b.cadence.zone,
            start=b.start.astimezone(UTC),
            end=b.end.astimezone(UTC),
            job=SlotJobOut(
                type=b.job.type, payload=b.job.payload, queue=b.job.queue, priority=b.job.priority
            ),
            max_in_flight=b.pacing.max_in_flight,
            max_per_second=b.pacing.max_per_second,
            status=b.status,
            cursor=utc(b.cursor),
            first_slot=utc(b.first_slot),
            last_slot=utc(b.last_slot),
            last_error=b.last_error,
            created_by=b.created_by,
            created_at=b.created_at,
            updated_at=b.updated_at,
            finished_at=b.finished_at,
            progress=None if progress is None else ProgressOut.of(progress),
        )


class SlotOut(ApiModel):
    scheduled_for: datetime
    job_id: int | None = Field(description="Its job if it exists already (nothing is created).")


class PlanOut(ApiModel):
    slots_total: int = Field(description=f"Slots in the range (at most {MAX_SLOTS:,}).")
    slots_existing: int
    slots_new: int
    first_slot: datetime | None
    last_slot: datetime | None
    preview: list[SlotOut] = Field(description="The first slots, one by one.")

    @classmethod
    def of(cls, plan: Plan) -> PlanOut:
        return cls(
            slots_total=plan.total,
            slots_existing=plan.existing,
            slots_new=plan.new,
            first_slot=utc(plan.first),
            last_slot=utc(plan.last),
            preview=[
                SlotOut(scheduled_for=p.at.astimezone(UTC), job_id=p.job_id) for p in plan.preview
            ],
        )


class BackfillCreated(ApiModel):
    dry_run: bool
    plan: PlanOut
    backfill: BackfillOut | None = Field(description="None for a dry run: nothing was written.")


class BackfillList(ApiModel):
    items: list[BackfillOut]
    next_cursor: str | None


class BackfillCancelIn(RequestModel):
    cancel_queued: bool = Field(
        False, description="Also cancel its jobs not yet claimed (pending or scheduled)."
    )


class BackfillCancelled(ApiModel):
    backfill: BackfillOut
    cancelled_job_ids: list[int]


class BackfillSourceOut(ApiModel):
    id: int
    tenant_id: str
    project_id: str
    name: str
    cron: str | None
    interval_seconds: int | None
    zone: str
    watermark: datetime | None = Field(
        description="The latest slot such that it and every earlier slot completed."
    )
    held_at: datetime | None = Field(
        description="The first slot after the watermark that holds it: not completed, or no job."
    )
    held_by_job_id: int | None
    held_by_status: str | None
    last_slot: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, s: Source) -> BackfillSourceOut:
        return cls(
            id=s.id,
            tenant_id=s.tenant_id,
            project_id=s.project_id,
            name=s.name,
            cron=s.cadence.cron,
            interval_seconds=s.cadence.interval_seconds,
            zone=s.cadence.zone,
            watermark=utc(s.watermark),
            held_at=utc(s.held_at),
            held_by_job_id=s.held_by_job,
            held_by_status=s.held_by_status,
            last_slot=utc(s.last_slot),
            created_at=s.created_at,
            updated_at=s.updated_at,
        )


class BackfillSourceList(ApiModel):
    items: list[BackfillSourceOut]
