"""The jobs repository: how the rest of the engine reads jobs.

Writes of ``status`` belong to the guard alone; this repository only reads (and, in later
issues, touches lease and progress columns that do not change state).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, select

from jobengine.domain.job import Job
from jobengine.domain.status import JobStatus
from jobengine.errors import JobNotFound
from jobengine.store import queries
from jobengine.store.models import JobRow
from jobengine.store.rows import job_from_row

_jobs = JobRow.__table__


@dataclass(frozen=True, slots=True)
class JobFilter:
    tenant_id: str | None = None
    statuses: Sequence[JobStatus] = ()
    types: Sequence[str] = ()
    queues: Sequence[str] = ()
    created_from: datetime | None = None
    created_to: datetime | None = None


@dataclass(frozen=True, slots=True)
class JobPage:
    jobs: list[Job]
    next_cursor: int | None
    """Pass back as ``after_id`` for the next page; None when this page was the last."""


class JobsRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def get(self, job_id: int) -> Job:
        row = self._conn.exec_driver_sql(queries.GET_JOB, {"job_id": job_id}).mappings().first()
        if row is None:
            raise JobNotFound(job_id)
        return job_from_row(row)

    def find_by_idempotency_key(self, tenant_id: str, key: str) -> tuple[Job, str | None] | None:
        """The job a tenant created with ``key``, and the hash of the request that created it."""
        row = (
            self._conn.exec_driver_sql(
                queries.GET_JOB_BY_IDEMPOTENCY_KEY, {"tenant_id": tenant_id, "idempotency_key": key}
            )
            .mappings()
            .first()
        )
        return None if row is None else (job_from_row(row), row["request_hash"])

    def list(self, flt: JobFilter, *, after_id: int = 0, limit: int = 100) -> JobPage:
        """Jobs matching ``flt`` in ascending id order, a page at a time (keyset pagination)."""
        query = select(_jobs).where(_jobs.c.id > after_id)
        if flt.tenant_id is not None:
            query = query.where(_jobs.c.tenant_id == flt.tenant_id)
        if flt.statuses:
            query = query.where(_jobs.c.status.in_(list(flt.statuses)))
        if flt.types:
            query = query.where(_jobs.c.type.in_(list(flt.types)))
        if flt.queues:
            query = query.where(_jobs.c.queue.in_(list(flt.queues)))
        if flt.created_from is not None:
            query = query.where(_jobs.c.created_at >= flt.created_from)
        if flt.created_to is not None:
            query = query.where(_jobs.c.created_at < flt.created_to)
        rows = self._conn.execute(query.order_by(_jobs.c.id).limit(limit + 1)).mappings().all()
        jobs = [job_from_row(r) for r in rows[:limit]]
        return JobPage(jobs=jobs, next_cursor=jobs[-1].id if len(rows) > limit else None)

    def count_by_status(self, tenant_id: str | None = None) -> dict[JobStatus, int]:
        query = select(_jobs.c.status, func.count()).group_by(_jobs.c.status)
        if tenant_id is not None:
            query = query.where(_jobs.c.tenant_id == tenant_id)
        counts = {status: 0 for status in JobStatus}
        for status, n in self._conn.execute(query).tuples():
            counts[JobStatus(status)] = n
        return counts
