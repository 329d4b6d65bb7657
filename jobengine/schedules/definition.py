"""What a schedule is: a cadence, the job or run each slot creates, and how slots are decided.

``check`` refuses a schedule before anything is written, naming the field: exactly one of a
job and a run, and a run planned as its submission would be (``runs.planner``: a cycle, an
edge to a key outside it). The registry then judges each job as a submission of it would be
judged (the type's catalogue entry, its payload schema), so a schedule that was accepted does
not fail at its first slot for a reason known today.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from jobengine.domain.job import JSONValue, NewJob
from jobengine.domain.run import RunJobSpec, RunSpec, TriggerRule
from jobengine.runs import planner
from jobengine.schedules.errors import InvalidSchedule
from jobengine.schedules.slots import EPOCH, Cadence

NAME_MAX = 200
JITTER_MAX_SECONDS = 86_400
CATCH_UP_MAX_SECONDS = 366 * 86_400
DEFAULT_CATCH_UP_SECONDS = 300
"""Slots later than this when the leader sees them are recorded as missed, not fired: a
leader failover (about one lease TTL) or a restart loses nothing, and a week of downtime does
not release a week of jobs at once."""


class Overlap(StrEnum):
    """What a slot does while the job (or run) of the slot before it is not final."""

    SKIP = "skip"
    """Recorded as skipped (``overlap``)."""
    BUFFER_ONE = "buffer_one"
    """The first such slot waits and fires when that job (or run) is final; later ones are
    skipped."""
    ALLOW = "allow"
    """Fires anyway."""


class SlotOutcome(StrEnum):
    FIRED = "fired"
    SKIPPED = "skipped"
    BUFFERED = "buffered"


@dataclass(frozen=True, slots=True)
class JobTemplate:
    """The job each slot creates, as ``NewJob`` takes it."""

    type: str
    payload: JSONValue = field(default_factory=dict)
    queue: str = "default"
    priority: int = 0
    retry_policy: dict[str, Any] | None = None
    time_limit_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class RunTemplate:
    """The run each slot creates, as ``RunSpec`` takes it; the schedule gives its tenant, its
    project and its idempotency key (schedule, slot). Stored as ``to_json`` writes it."""

    name: str
    jobs: tuple[RunJobSpec, ...]
    edges: tuple[tuple[str, str], ...] = ()
    """(parent key, child key): the child waits for the parent."""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "jobs": [
                {
                    "key": job.key,
                    "type": job.type,
                    "payload": job.payload,
                    "queue": job.queue,
                    "priority": job.priority,
                    "retry_policy": job.retry_policy,
                    "time_limit_seconds": job.time_limit_seconds,
                    "trigger_rule": TriggerRule(job.trigger_rule).value,
                }
                for job in self.jobs
            ],
            "edges": [[parent, child] for parent, child in self.edges],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunTemplate:
        return cls(
            name=data["name"],
            jobs=tuple(
                RunJobSpec(
                    key=job["key"],
                    type=job["type"],
                    payload=job["payload"],
                    queue=job["queue"],
                    priority=job["priority"],
                    retry_policy=job["retry_policy"],
                    time_limit_seconds=job["time_limit_seconds"],
                    trigger_rule=TriggerRule(job["trigger_rule"]),
                )
                for job in data["jobs"]
            ),
            edges=tuple((parent, child) for parent, child in data["edges"]),
        )


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """What a user asks for; everything the leader keeps besides is in ``Schedule``."""

    name: str
    cadence: Cadence
    job: JobTemplate | None = None
    """What each slot creates: this job, or (instead) ``run``; exactly one of them."""
    run: RunTemplate | None = None
    tenant_id: str = "default"
    project_id: str = "default"
    start_at: datetime | None = None
    """No slot before it; an interval counts from it (from the Unix epoch without it)."""
    end_at: datetime | None = None
    """No slot at or after it."""
    jitter_seconds: int = 0
    overlap: Overlap = Overlap.SKIP
    catch_up_seconds: int = DEFAULT_CATCH_UP_SECONDS
    paused: bool = False

    def new_job(self, schedule_id: int, slot: datetime) -> NewJob:
        """The job of ``slot``, keyed by (schedule, slot): creating it again returns it."""
        assert self.job is not None, f"schedule {self.name!r} creates a run, not a job"
        delay = jitter(schedule_id, slot, self.jitter_seconds)
        return NewJob(
            type=self.job.type,
            payload=self.job.payload,
            tenant_id=self.tenant_id,
            project_id=self.project_id,
            queue=self.job.queue,
            priority=self.job.priority,
            retry_policy=self.job.retry_policy,
            time_limit_seconds=self.job.time_limit_seconds,
            not_before=slot + delay if delay else None,
            idempotency_key=slot_key(schedule_id, slot),
            scheduled_for=slot,
        )

    def new_run(self, schedule_id: int, slot: datetime) -> RunSpec:
        """The run of ``slot``, keyed by (schedule, slot) as a job's is; the jitter delays
        every job of it (the roots wait for it, the rest wait for the roots anyway)."""
        assert self.run is not None, f"schedule {self.name!r} creates a job, not a run"
        delay = jitter(schedule_id, slot, self.jitter_seconds)
        not_before = slot + delay if delay else None
        return RunSpec(
            tenant_id=self.tenant_id,
            project_id=self.project_id,
            name=self.run.name,
            jobs=tuple(replace(job, not_before=not_before) for job in self.run.jobs),
            edges=self.run.edges,
            idempotency_key=slot_key(schedule_id, slot),
        )


@dataclass(frozen=True, slots=True)
class Schedule:
    id: int
    spec: ScheduleSpec
    next_slot_at: datetime | None
    """The first slot not decided yet; None once none is left (past ``end_at``)."""
    last_slot_at: datetime | None
    last_job_id: int | None
    last_run_id: int | None
    buffered_slot_at: datetime | None
    fired_count: int
    skipped_count: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class SlotDecision:
    slot_at: datetime
    outcome: SlotOutcome
    reason: str | None
    job_id: int | None
    decided_at: datetime | None = None
    run_id: int | None = None


def slot_key(schedule_id: int, slot: datetime) -> str:
    """The idempotency key of a slot's job or run: the same slot never makes a second one."""
    return f"schedule:{schedule_id}:{slot.isoformat()}"


def jitter(schedule_id: int, slot: datetime, jitter_seconds: int) -> timedelta:
    """A delay in [0, jitter_seconds] drawn from the schedule and the slot alone, so a slot
    fired again after a failover starts at the same time as the first attempt would have."""
    if jitter_seconds <= 0:
        return timedelta()
    digest = hashlib.sha256(slot_key(schedule_id, slot).encode()).digest()
    return timedelta(seconds=int.from_bytes(digest[:8], "big") % (jitter_seconds + 1))


def anchored(cadence: Cadence, start_at: datetime | None) -> Cadence:
    """An interval counts from the schedule's start, when it has one."""
    if cadence.interval_seconds is None or start_at is None:
        return cadence
    return Cadence.parse(
        cron=None, interval_seconds=cadence.interval_seconds, zone=cadence.zone, anchor=start_at
    )


def check(spec: ScheduleSpec) -> None:
    """Refuse a schedule whose fields cannot be used; its jobs are judged by ``submission``."""
    if (spec.job is None) == (spec.run is None):
        given = "neither job nor run" if spec.job is None else "both job and run"
        raise InvalidSchedule(
            "job" if spec.job is None else "run",
            f"{given} given: a slot creates exactly one of them",
            hint='Give job (one job per slot, e.g. {"type": "noop"}) or run (a workflow'
            " per slot: name, jobs, edges), not both.",
        )
    if spec.run is not None:
        check_run(spec)
    if not spec.name.strip() or len(spec.name) > NAME_MAX:
        raise InvalidSchedule(
            "name", f"{spec.name!r} is not a usable name", hint=f"Give 1 to {NAME_MAX} characters."
        )
    for name, value in (("startAt", spec.start_at), ("endAt", spec.end_at)):
        if value is not None and value.utcoffset() is None:
            raise InvalidSchedule(
                name,
                f"{value.isoformat()} has no UTC offset",
                hint="Give the time with its offset, e.g. 2026-01-01T00:00:00Z.",
            )
    if spec.start_at is not None and spec.end_at is not None and spec.end_at <= spec.start_at:
        raise InvalidSchedule(
            "endAt",
            f"{spec.end_at.isoformat()} is not after startAt {spec.start_at.isoformat()}",
            hint="Give an endAt later than startAt, or leave it unset.",
        )
    if not 0 <= spec.jitter_seconds <= JITTER_MAX_SECONDS:
        raise InvalidSchedule(
            "jitterSeconds",
            f"{spec.jitter_seconds} is out of range",
            hint=f"Give 0 (no jitter) to {JITTER_MAX_SECONDS} seconds.",
        )
    if not 0 < spec.catch_up_seconds <= CATCH_UP_MAX_SECONDS:
        raise InvalidSchedule(
            "catchUpSeconds",
            f"{spec.catch_up_seconds} is out of range",
            hint=f"Give how late a slot may still fire, 1 to {CATCH_UP_MAX_SECONDS} seconds"
            f" (default {DEFAULT_CATCH_UP_SECONDS}).",
        )


def check_run(spec: ScheduleSpec) -> None:
    """The run is planned as ``POST /api/v1/runs`` plans one (the planner's refusal names the
    key, the edge or the cycle); a start time of a job's own would be one instant for every
    slot."""
    assert spec.run is not None
    for n, job in enumerate(spec.run.jobs):
        if job.not_before is not None:
            raise InvalidSchedule(
                f"run.jobs[{n}].notBefore",
                f"job {job.key!r} has a start time of its own",
                hint="Leave notBefore out: each run starts at its slot (spread the slots with"
                " jitterSeconds).",
            )
    planner.plan(spec.new_run(0, EPOCH))
    if not spec.run.name.strip():
        raise InvalidSchedule("run.name", "a run needs a name", hint="Name it, e.g. 'nightly-etl'.")


def overlap_of(value: str) -> Overlap:
    try:
        return Overlap(value)
    except ValueError:
        raise InvalidSchedule(
            "overlap",
            f"{value!r} is not an overlap policy",
            hint="Use one of: " + ", ".join(policy.value for policy in Overlap) + ".",
        ) from None


def spec_from_row(row: Mapping[Any, Any]) -> ScheduleSpec:
    cadence = Cadence(
        cron=row["cron"],
        interval_seconds=row["interval_seconds"],
        zone=row["zone"],
        anchor=row["start_at"] if row["interval_seconds"] and row["start_at"] else EPOCH,
    )
    job = None
    if row["job_type"] is not None:
        job = JobTemplate(
            type=row["job_type"],
            payload=row["payload"],
            queue=row["queue"],
            priority=row["priority"],
            retry_policy=row["retry_policy"],
            time_limit_seconds=row["time_limit_seconds"],
        )
    run = None if row["run_template"] is None else RunTemplate.from_json(row["run_template"])
    return ScheduleSpec(
        name=row["name"],
        cadence=cadence,
        job=job,
        run=run,
        tenant_id=row["tenant_id"],
        project_id=row["project_id"],
        start_at=row["start_at"],
        end_at=row["end_at"],
        jitter_seconds=row["jitter_seconds"],
        overlap=Overlap(row["overlap"]),
        catch_up_seconds=row["catch_up_seconds"],
        paused=row["paused"],
    )


def schedule_from_row(row: Mapping[Any, Any]) -> Schedule:
    return Schedule(
        id=row["id"],
        spec=spec_from_row(row),
        next_slot_at=row["next_slot_at"],
        last_slot_at=row["last_slot_at"],
        last_job_id=row["last_job_id"],
        last_run_id=row["last_run_id"],
        buffered_slot_at=row["buffered_slot_at"],
        fired_count=row["fired_count"],
        skipped_count=row["skipped_count"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
