"""The job-history repository: the read side of every job's audit trail and timeline."""

from __future__ import annotations

from sqlalchemy import Connection

from jobengine.domain.events import EventEnvelope, ProgressEvent, TimelineEvent
from jobengine.domain.job import JobHistory
from jobengine.store import queries
from jobengine.store.rows import history_from_row


class JobHistoryRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def for_job(self, job_id: int) -> list[JobHistory]:
        """A job's transitions, oldest first (by monotonic id)."""
        rows = self._conn.exec_driver_sql(queries.JOB_HISTORY, {"job_id": job_id}).mappings()
        return [history_from_row(r) for r in rows]

    def events_for_job(self, job_id: int, after_id: int = 0) -> list[EventEnvelope]:
        """A job's outbox events after ``after_id``, in id order, as typed envelopes."""
        rows = self._conn.exec_driver_sql(
            queries.JOB_EVENTS, {"job_id": job_id, "after_id": after_id}
        ).mappings()
        return [
            EventEnvelope(
                id=r["id"],
                tenant_id=r["tenant_id"],
                occurred_at=r["occurred_at"],
                type=r["type"],
                event=(
                    TimelineEvent.model_validate(r["data"])
                    if r["type"] == "job.transition"
                    else ProgressEvent.model_validate(r["data"])
                ),
            )
            for r in rows
        ]
