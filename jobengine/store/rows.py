"""Turning result rows into domain objects, so no ORM object leaves the store."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobengine.domain.job import Job, JobHistory, NewJob
from jobengine.domain.status import JobStatus


def job_from_row(row: Mapping[Any, Any]) -> Job:
    return Job(
        id=row["id"],
        tenant_id=row["tenant_id"],
        project_id=row["project_id"],
        type=row["type"],
        queue=row["queue"],
        priority=row["priority"],
        payload=row["payload"],
        status=JobStatus(row["status"]),
        attempt=row["attempt"],
        retry_policy=row["retry_policy"],
        not_before=row["not_before"],
        lease_owner=row["lease_owner"],
        lease_token=row["lease_token"],
        lease_expires_at=row["lease_expires_at"],
        idempotency_key=row["idempotency_key"],
        result=row["result"],
        last_error=row["last_error"],
        progress=row["progress"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        scheduled_at=row["scheduled_at"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        dispatched_at=row.get("dispatched_at"),
        time_limit_seconds=row.get("time_limit_seconds"),
        budget_start_attempt=row.get("budget_start_attempt", 0),
        run_id=row.get("run_id"),
        run_key=row.get("run_key"),
        trigger_rule=row.get("trigger_rule"),
        scheduled_for=row.get("scheduled_for"),
        traceparent=row.get("traceparent"),
    )


def born_job(
    new: NewJob,
    row: Mapping[Any, Any],
    *,
    run_id: int | None = None,
    run_key: str | None = None,
    trigger_rule: str | None = None,
) -> Job:
    """A job as its creation stored it: what the producer sent, with what Postgres gave it
    (``store.queries.BORN_COLUMNS``), and for a run's job its place in the run. Nothing
    else can have changed inside the statement."""
    return Job(
        id=row["id"],
        tenant_id=new.tenant_id,
        project_id=new.project_id,
        type=new.type,
        queue=new.queue,
        priority=new.priority,
        payload=new.payload,
        status=JobStatus(row["status"]),
        attempt=0,
        retry_policy=new.retry_policy,
        not_before=new.not_before,
        lease_owner=None,
        lease_token=0,
        lease_expires_at=None,
        idempotency_key=None,
        result=None,
        last_error=None,
        progress=None,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        scheduled_at=row["scheduled_at"],
        started_at=None,
        completed_at=None,
        dispatched_at=row["dispatched_at"],
        time_limit_seconds=new.time_limit_seconds,
        budget_start_attempt=0,
        run_id=run_id,
        run_key=run_key,
        trigger_rule=trigger_rule,
        scheduled_for=new.scheduled_for,
    )


def history_from_row(row: Mapping[Any, Any]) -> JobHistory:
    return JobHistory(
        id=row["id"],
        job_id=row["job_id"],
        from_status=JobStatus(row["from_status"]) if row["from_status"] else None,
        to_status=JobStatus(row["to_status"]),
        at=row["at"],
        actor=row["actor"],
        reason=row["reason"],
        attempt=row["attempt"],
        details=row["details"] or {},
    )
