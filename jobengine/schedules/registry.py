"""Creating, reading, editing, pausing and deleting schedules, in the caller's transaction.

No call here fires a slot. Creating, editing and resuming all set the next slot to the first
one after now (and not before ``startAt``, nor before the last slot decided), so the slots
that passed while a schedule was paused, or under its old cadence, are not fired by the
change; the leader decides every slot from ``next_slot_at`` on.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from jobengine.audit import Origin, record
from jobengine.audit.changes import changes
from jobengine.runs.service import default_validator, new_job
from jobengine.schedules.definition import (
    JobTemplate,
    Schedule,
    ScheduleSpec,
    SlotDecision,
    SlotOutcome,
    anchored,
    check,
    schedule_from_row,
)
from jobengine.schedules.errors import ScheduleNameTaken, ScheduleNotFound
from jobengine.schedules.slots import next_slot
from jobengine.store import schedule_queries as q

_JUST = timedelta(microseconds=1)


def first_slot(spec: ScheduleSpec, after: datetime) -> datetime | None:
    """The first slot strictly after ``after``, not before the start, before the end."""
    if spec.start_at is not None and spec.start_at > after:
        slot = next_slot(spec.cadence, spec.start_at - _JUST)
    else:
        slot = next_slot(spec.cadence, after)
    if slot is None or (spec.end_at is not None and slot >= spec.end_at):
        return None
    return slot


def create(
    conn: Connection, spec: ScheduleSpec, *, now: datetime, origin: Origin | None = None
) -> Schedule:
    """``origin`` (here and below) files the act in the audit log, in the caller's
    transaction."""
    spec = _checked(conn, spec, now)
    row = conn.exec_driver_sql(q.CREATE_SCHEDULE, _params(spec, first_slot(spec, now))).mappings()
    created = row.first()
    if created is None:
        raise ScheduleNameTaken(spec.tenant_id, spec.project_id, spec.name)
    schedule = schedule_from_row(created)
    _audit(conn, origin, "schedule.create", schedule, _audit_view(schedule.spec))
    return schedule


def get(conn: Connection, schedule_id: int, *, tenant_id: str | None = None) -> Schedule:
    """``tenant_id`` confines the lookup to one tenant's schedules (a tenant key's view)."""
    row = conn.exec_driver_sql(q.GET_SCHEDULE, {"id": schedule_id}).mappings().first()
    if row is None or (tenant_id is not None and row["tenant_id"] != tenant_id):
        raise ScheduleNotFound(schedule_id)
    return schedule_from_row(row)


def list_schedules(
    conn: Connection, *, tenant_id: str | None = None, after: int = 0, limit: int = 100
) -> list[Schedule]:
    params: dict[str, Any] = {"after": after, "limit": limit, "tenant_id": tenant_id}
    sql = q.LIST_SCHEDULES if tenant_id is None else q.LIST_TENANT_SCHEDULES
    return [schedule_from_row(r) for r in conn.exec_driver_sql(sql, params).mappings()]


def update(
    conn: Connection,
    schedule_id: int,
    spec: ScheduleSpec,
    *,
    now: datetime,
    tenant_id: str | None = None,
    origin: Origin | None = None,
) -> Schedule:
    """Replace what the schedule asks for; its next slot is the first after now (or after
    its last decided slot, should that lie ahead), so the edit itself fires nothing."""
    current = _locked(conn, schedule_id, tenant_id)
    changed = _update(conn, schedule_id, current, spec, now)
    detail = {"changes": changes(_audit_view(current.spec), _audit_view(changed.spec))}
    _audit(conn, origin, "schedule.update", changed, detail)
    return changed


def _update(
    conn: Connection, schedule_id: int, current: Schedule, spec: ScheduleSpec, now: datetime
) -> Schedule:
    spec = _checked(conn, replace(spec, tenant_id=current.spec.tenant_id), now)
    after = max(now, current.last_slot_at) if current.last_slot_at else now
    params = _params(spec, first_slot(spec, after)) | {"id": schedule_id}
    try:
        with conn.begin_nested():
            row = conn.exec_driver_sql(q.UPDATE_SCHEDULE, params).mappings().one()
    except IntegrityError as exc:
        if "uq_schedules_tenant_id" not in str(exc.orig):
            raise
        raise ScheduleNameTaken(spec.tenant_id, spec.project_id, spec.name) from None
    return schedule_from_row(row)


def set_paused(
    conn: Connection,
    schedule_id: int,
    paused: bool,
    *,
    now: datetime,
    tenant_id: str | None = None,
    origin: Origin | None = None,
) -> Schedule:
    """Pause, or resume from now: the slots that passed while paused are not fired."""
    current = _locked(conn, schedule_id, tenant_id)
    changed = _update(conn, schedule_id, current, replace(current.spec, paused=paused), now)
    detail = {"name": current.spec.name, "changed": current.spec.paused != paused}
    _audit(conn, origin, "schedule.pause" if paused else "schedule.resume", changed, detail)
    return changed


def delete(
    conn: Connection,
    schedule_id: int,
    *,
    tenant_id: str | None = None,
    origin: Origin | None = None,
) -> None:
    """The schedule and its slot records; the jobs it created stay."""
    current = _locked(conn, schedule_id, tenant_id)
    conn.exec_driver_sql(q.DELETE_SCHEDULE, {"id": schedule_id})
    _audit(conn, origin, "schedule.delete", current, _audit_view(current.spec))


def _audit_view(spec: ScheduleSpec) -> dict[str, Any]:
    """What an audit entry says of a schedule: its cadence and settings, never a payload."""
    return {
        "name": spec.name,
        "projectId": spec.project_id,
        "cron": spec.cadence.cron,
        "intervalSeconds": spec.cadence.interval_seconds,
        "zone": spec.cadence.zone,
        "jobType": spec.job.type if spec.job else None,
        "run": spec.run is not None,
        "startAt": spec.start_at.isoformat() if spec.start_at else None,
        "endAt": spec.end_at.isoformat() if spec.end_at else None,
        "jitterSeconds": spec.jitter_seconds,
        "overlap": str(spec.overlap),
        "catchUpSeconds": spec.catch_up_seconds,
        "paused": spec.paused,
    }


def _audit(
    conn: Connection,
    origin: Origin | None,
    action: str,
    schedule: Schedule,
    detail: dict[str, Any],
) -> None:
    if origin is not None:
        record(
            conn,
            origin,
            action,
            object_id=schedule.id,
            tenant=schedule.spec.tenant_id,
            detail=detail,
        )


def slots(
    conn: Connection,
    schedule_id: int,
    *,
    before: datetime,
    limit: int = 100,
    tenant_id: str | None = None,
) -> list[SlotDecision]:
    """The slots decided before ``before``, latest first."""
    get(conn, schedule_id, tenant_id=tenant_id)
    params = {"schedule_id": schedule_id, "before": before, "limit": limit}
    return [
        SlotDecision(
            slot_at=r["slot_at"],
            outcome=SlotOutcome(r["outcome"]),
            reason=r["reason"],
            job_id=r["job_id"],
            decided_at=r["decided_at"],
            run_id=r["run_id"],
        )
        for r in conn.exec_driver_sql(q.LIST_SLOTS, params).mappings()
    ]


def _checked(conn: Connection, spec: ScheduleSpec, now: datetime) -> ScheduleSpec:
    """Each job the schedule creates is judged as its submission would be; a job's queue is
    fixed now (the type's, for ``default``), a run's jobs take their type's at each slot."""
    check(spec)
    spec = replace(spec, cadence=anchored(spec.cadence, spec.start_at))
    judge = default_validator(conn)
    if spec.run is not None:
        for step in spec.run.jobs:
            judge(new_job(spec.tenant_id, spec.project_id, step))
        return spec
    assert spec.job is not None
    job = judge(spec.new_job(0, spec.start_at or now))
    return replace(spec, job=replace(spec.job, queue=job.queue))


def _locked(conn: Connection, schedule_id: int, tenant_id: str | None) -> Schedule:
    row = conn.exec_driver_sql(q.LOCK_SCHEDULE, {"id": schedule_id}).mappings().first()
    if row is None or (tenant_id is not None and row["tenant_id"] != tenant_id):
        raise ScheduleNotFound(schedule_id)
    return schedule_from_row(row)


def _job_params(job: JobTemplate | None) -> dict[str, Any]:
    """A job's columns; all NULL for a schedule that creates a run."""
    if job is None:
        columns = ("job_type", "queue", "payload", "priority", "retry_policy")
        return dict.fromkeys(columns) | {"time_limit_seconds": None}
    return {
        "job_type": job.type,
        "queue": job.queue,
        "payload": json.dumps(job.payload),
        "priority": job.priority,
        "retry_policy": None if job.retry_policy is None else json.dumps(job.retry_policy),
        "time_limit_seconds": job.time_limit_seconds,
    }


def _params(spec: ScheduleSpec, next_slot_at: datetime | None) -> dict[str, Any]:
    return _job_params(spec.job) | {
        "tenant_id": spec.tenant_id,
        "project_id": spec.project_id,
        "name": spec.name,
        "cron": spec.cadence.cron,
        "interval_seconds": spec.cadence.interval_seconds,
        "zone": spec.cadence.zone,
        "run_template": None if spec.run is None else json.dumps(spec.run.to_json()),
        "start_at": spec.start_at,
        "end_at": spec.end_at,
        "jitter_seconds": spec.jitter_seconds,
        "overlap": spec.overlap.value,
        "catch_up_seconds": spec.catch_up_seconds,
        "paused": spec.paused,
        "next_slot_at": next_slot_at,
    }
