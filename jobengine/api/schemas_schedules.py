"""The schedules' REST shapes: what a user sends and what the API shows of a schedule.

A schedule creates a job per slot (``job``) or a run (``run``: the body of ``POST
/api/v1/runs`` without ``projectId``, which is the schedule's, its jobs judged by the same
models), never both.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, Field, field_validator

from jobengine.api.schemas import (
    ApiModel,
    Name,
    QueueName,
    RequestModel,
    RetryPolicyIn,
    payload_storable,
)
from jobengine.api.schemas_runs import MAX_RUN_EDGES, MAX_RUN_JOBS, RunEdgeIn, RunJobCreate
from jobengine.domain.run import TriggerRule
from jobengine.schedules.definition import (
    DEFAULT_CATCH_UP_SECONDS,
    JITTER_MAX_SECONDS,
    JobTemplate,
    RunTemplate,
    Schedule,
    SlotDecision,
)

OverlapName = Literal["skip", "buffer_one", "allow"]


class ScheduledJobIn(RequestModel):
    """The job each slot creates; the job routes' fields, without a start time or a key."""

    type: Name = Field(description="A job type of the catalogue, e.g. noop.")
    payload: Any = Field(default_factory=dict, description="JSON, at most 256 KiB compact.")
    queue: QueueName = "default"
    priority: int = Field(0, ge=0, le=9)
    retry_policy: RetryPolicyIn | None = None
    time_limit_seconds: float | None = Field(None, gt=0, le=7 * 86400)

    @field_validator("payload")
    @classmethod
    def _payload_storable(cls, value: Any) -> Any:
        return payload_storable(value)

    def to_template(self) -> JobTemplate:
        return JobTemplate(
            type=self.type,
            payload=self.payload,
            queue=self.queue,
            priority=self.priority,
            retry_policy=self.retry_policy.to_engine() if self.retry_policy else None,
            time_limit_seconds=self.time_limit_seconds,
        )


class ScheduledRunIn(RequestModel):
    """The run each slot creates: its name, its jobs and edges as ``POST /api/v1/runs``
    takes them; each run is keyed by (schedule, slot) and its jobs start at the slot, so
    neither an Idempotency-Key nor a job's ``notBefore`` belongs here."""

    name: Name
    jobs: list[RunJobCreate] = Field(min_length=1, max_length=MAX_RUN_JOBS)
    edges: list[RunEdgeIn] = Field(default_factory=list, max_length=MAX_RUN_EDGES)

    def to_template(self) -> RunTemplate:
        return RunTemplate(
            name=self.name,
            jobs=tuple(job.to_spec() for job in self.jobs),
            edges=tuple((edge.parent, edge.child) for edge in self.edges),
        )

    def types(self) -> set[str]:
        return {job.type for job in self.jobs}


class ScheduleCreate(RequestModel):
    name: Name
    project_id: Name = "default"
    cron: str | None = Field(
        None, max_length=200, description="5 fields, read in `zone`.", examples=["30 2 * * *"]
    )
    interval_seconds: int | None = Field(None, description="Instead of cron: a fixed interval.")
    zone: str = Field("UTC", max_length=100, examples=["Europe/Berlin"])
    job: ScheduledJobIn | None = Field(None, description="A job per slot; or give run.")
    run: ScheduledRunIn | None = Field(None, description="A run (workflow) per slot; or job.")
    start_at: AwareDatetime | None = None
    end_at: AwareDatetime | None = None
    jitter_seconds: int = Field(0, description=f"0 to {JITTER_MAX_SECONDS}; fixed per slot.")
    overlap: OverlapName = "skip"
    catch_up_seconds: int = Field(
        DEFAULT_CATCH_UP_SECONDS, description="How late a slot may still fire; later: missed."
    )
    paused: bool = False


class SchedulePatch(RequestModel):
    """Fields left out keep their values; the cadence is replaced whole when either of cron
    and intervalSeconds is sent, and what a slot creates when job or run is (sending one
    drops the other). An edit fires nothing by itself."""

    name: Name | None = None
    cron: str | None = Field(None, max_length=200)
    interval_seconds: int | None = None
    zone: str | None = Field(None, max_length=100)
    job: ScheduledJobIn | None = None
    run: ScheduledRunIn | None = None
    start_at: AwareDatetime | None = None
    end_at: AwareDatetime | None = None
    jitter_seconds: int | None = None
    overlap: OverlapName | None = None
    catch_up_seconds: int | None = None


class ScheduledJobOut(ApiModel):
    type: str
    payload: Any
    queue: str
    priority: int
    retry_policy: dict[str, Any] | None
    time_limit_seconds: float | None

    @classmethod
    def of(cls, job: JobTemplate) -> ScheduledJobOut:
        return cls(
            type=job.type,
            payload=job.payload,
            queue=job.queue,
            priority=job.priority,
            retry_policy=job.retry_policy,
            time_limit_seconds=job.time_limit_seconds,
        )


class ScheduledRunJobOut(ApiModel):
    key: str
    type: str
    payload: Any
    queue: str | None = Field(description="null: the type's own queue.")
    priority: int
    retry_policy: dict[str, Any] | None
    time_limit_seconds: float | None
    trigger_rule: TriggerRule


class ScheduledRunEdgeOut(ApiModel):
    parent: str
    child: str


class ScheduledRunOut(ApiModel):
    """The run each slot creates, in the fields ``POST /api/v1/runs`` takes."""

    name: str
    jobs: list[ScheduledRunJobOut]
    edges: list[ScheduledRunEdgeOut]

    @classmethod
    def of(cls, run: RunTemplate) -> ScheduledRunOut:
        return cls(
            name=run.name,
            jobs=[
                ScheduledRunJobOut(
                    key=job.key,
                    type=job.type,
                    payload=job.payload,
                    queue=job.queue,
                    priority=job.priority,
                    retry_policy=job.retry_policy,
                    time_limit_seconds=job.time_limit_seconds,
                    trigger_rule=TriggerRule(job.trigger_rule),
                )
                for job in run.jobs
            ],
            edges=[ScheduledRunEdgeOut(parent=p, child=c) for p, c in run.edges],
        )


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


class ScheduleOut(ApiModel):
    id: int
    tenant_id: str
    project_id: str
    name: str
    cron: str | None
    interval_seconds: int | None
    zone: str
    job: ScheduledJobOut | None = Field(description="The job each slot creates; or run.")
    run: ScheduledRunOut | None = Field(description="The run each slot creates; or job.")
    start_at: datetime | None
    end_at: datetime | None
    jitter_seconds: int
    overlap: str
    catch_up_seconds: int
    paused: bool
    next_slot_at: datetime | None = Field(description="The next slot to decide; null: no more.")
    last_slot_at: datetime | None
    last_job_id: int | None
    last_run_id: int | None = Field(description="The run the last slot fired (run schedules).")
    buffered_slot_at: datetime | None
    fired_count: int
    skipped_count: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, schedule: Schedule) -> ScheduleOut:
        spec = schedule.spec
        return cls(
            id=schedule.id,
            tenant_id=spec.tenant_id,
            project_id=spec.project_id,
            name=spec.name,
            cron=spec.cadence.cron,
            interval_seconds=spec.cadence.interval_seconds,
            zone=spec.cadence.zone,
            job=None if spec.job is None else ScheduledJobOut.of(spec.job),
            run=None if spec.run is None else ScheduledRunOut.of(spec.run),
            start_at=_utc(spec.start_at),
            end_at=_utc(spec.end_at),
            jitter_seconds=spec.jitter_seconds,
            overlap=spec.overlap.value,
            catch_up_seconds=spec.catch_up_seconds,
            paused=spec.paused,
            next_slot_at=_utc(schedule.next_slot_at),
            last_slot_at=_utc(schedule.last_slot_at),
            last_job_id=schedule.last_job_id,
            last_run_id=schedule.last_run_id,
            buffered_slot_at=_utc(schedule.buffered_slot_at),
            fired_count=schedule.fired_count,
            skipped_count=schedule.skipped_count,
            created_at=schedule.created_at.astimezone(UTC),
            updated_at=schedule.updated_at.astimezone(UTC),
        )


class ScheduleList(ApiModel):
    items: list[ScheduleOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null: last.")


class SlotOut(ApiModel):
    slot_at: datetime
    outcome: str = Field(description="fired, skipped or buffered.")
    reason: str | None = Field(description="Why skipped: missed, overlap, or refused: CODE.")
    job_id: int | None
    run_id: int | None = Field(description="The run a run schedule's slot fired.")
    decided_at: datetime | None

    @classmethod
    def of(cls, decision: SlotDecision) -> SlotOut:
        return cls(
            slot_at=decision.slot_at.astimezone(UTC),
            outcome=decision.outcome.value,
            reason=decision.reason,
            job_id=decision.job_id,
            run_id=decision.run_id,
            decided_at=_utc(decision.decided_at),
        )


class SlotList(ApiModel):
    items: list[SlotOut]
