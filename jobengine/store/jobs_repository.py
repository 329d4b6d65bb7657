"""The jobs repository: how the rest of the engine reads jobs.

Writes of ``status`` belong to the guard alone; this repository only reads (and, in later
issues, touches lease and progress columns that do not change state).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from psycopg.errors import QueryCanceled
from sqlalchemy import Connection, Select, Text, cast, func, or_, select
from sqlalchemy.exc import OperationalError

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
    text: str | None = None
    """A substring of the payload or the last error (case-insensitive). No index serves it:
    a page reads jobs in id order until it has its rows, so narrow with the other filters."""


@dataclass(frozen=True, slots=True)
class StateCount:
    """How many jobs rest in a state: exact, or the planner's estimate once past a cap."""

    n: int
    estimated: bool
    more_than_cap: bool = False
    """Counted past the cap, while the planner guessed fewer: all that is known is ``n`` > cap."""


@dataclass(frozen=True, slots=True)
class JobPage:
    jobs: list[Job]
    next_cursor: int | None
    """Pass back as ``after_id`` for the next page; None when this page was the last."""


@dataclass(frozen=True, slots=True)
class StuckJob:
    id: int
    type: str
    queue: str
    status: JobStatus
    attempt: int
    lease_owner: str | None
    why: str
    stuck_seconds: float


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

    def list(
        self, flt: JobFilter, *, after_id: int = 0, limit: int = 100, newest_first: bool = False
    ) -> JobPage:
        """Jobs matching ``flt`` in ascending id order, a page at a time (keyset pagination);
        ``newest_first`` pages down from the newest instead, ``after_id`` then being the id to
        go below (0: from the top)."""
        if newest_first:
            query = select(_jobs).where(_jobs.c.id < after_id) if after_id else select(_jobs)
            query = _filtered(query, flt).order_by(_jobs.c.id.desc())
        else:
            query = _filtered(select(_jobs).where(_jobs.c.id > after_id), flt).order_by(_jobs.c.id)
        rows = self._conn.execute(query.limit(limit + 1)).mappings().all()
        jobs = [job_from_row(r) for r in rows[:limit]]
        return JobPage(jobs=jobs, next_cursor=jobs[-1].id if len(rows) > limit else None)

    def stuck(self, scheduled_after_seconds: float = 60.0, limit: int = 500) -> Sequence[StuckJob]:
        """Jobs an operator should look at: see ``queries.STUCK_JOBS``."""
        rows = self._conn.exec_driver_sql(
            queries.STUCK_JOBS, {"scheduled_after": scheduled_after_seconds, "limit": limit}
        ).mappings()
        return [
            StuckJob(
                id=r["id"],
                type=r["type"],
                queue=r["queue"],
                status=JobStatus(r["status"]),
                attempt=r["attempt"],
                lease_owner=r["lease_owner"],
                why=r["why"],
                stuck_seconds=float(r["stuck_seconds"]),
            )
            for r in rows
        ]

    def count_by_status(self, tenant_id: str | None = None) -> dict[JobStatus, int]:
        query = select(_jobs.c.status, func.count().label("n")).group_by(_jobs.c.status)
        if tenant_id is not None:
            query = query.where(_jobs.c.tenant_id == tenant_id)
        counts = {status: 0 for status in JobStatus}
        for row in self._conn.execute(query):
            counts[JobStatus(row.status)] = row.n
        return counts

    def count_in_states(
        self, flt: JobFilter, *, cap: int, budget_ms: int
    ) -> dict[JobStatus, StateCount]:
        """Jobs matching ``flt`` in each state, at a cost that does not grow with the table:
        counted exactly up to ``cap`` while the counts together take under ``budget_ms`` (a
        tenant's states are read from ``ix_jobs_tenant_status_id``), else the planner's
        estimate."""
        counts: dict[JobStatus, StateCount] = {}
        deadline = time.monotonic() + budget_ms / 1000
        for status in flt.statuses or tuple(JobStatus):
            one = replace(flt, statuses=(status,))
            left_ms = int((deadline - time.monotonic()) * 1000)
            n = self._capped_count(one, cap, left_ms) if left_ms > 0 else None
            if n is not None and n <= cap:
                counts[status] = StateCount(n, estimated=False)
                continue
            guess = self.estimate(one)
            if n is not None and guess <= cap:
                counts[status] = StateCount(n, estimated=True, more_than_cap=True)
            else:
                counts[status] = StateCount(guess, estimated=True)
        return counts

    def _capped_count(self, flt: JobFilter, cap: int, timeout_ms: int) -> int | None:
        """Up to ``cap + 1`` matching jobs, or None when the statement ran out of time."""
        capped = _filtered(select(_jobs.c.id), flt).limit(cap + 1).subquery()
        savepoint = self._conn.begin_nested()
        try:
            self._conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(timeout_ms)}")
            n = int(self._conn.execute(select(func.count()).select_from(capped)).scalar_one())
        except OperationalError as exc:
            savepoint.rollback()  # takes the timeout back with it
            if isinstance(exc.orig, QueryCanceled):
                return None
            raise
        self._conn.exec_driver_sql("SET LOCAL statement_timeout = DEFAULT")
        savepoint.commit()
        return n

    def estimate(self, flt: JobFilter) -> int:
        """The planner's row estimate for ``flt``: free, and as good as the statistics."""
        compiled = _filtered(select(_jobs.c.id), flt).compile(
            dialect=self._conn.dialect, compile_kwargs={"literal_binds": True}
        )
        plan: list[dict[str, Any]] = self._conn.exec_driver_sql(
            f"EXPLAIN (FORMAT JSON) {compiled}"
        ).scalar_one()
        return int(plan[0]["Plan"]["Plan Rows"])


def _filtered(query: Select[Any], flt: JobFilter) -> Select[Any]:
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
    if flt.text:
        query = query.where(
            or_(
                cast(_jobs.c.payload, Text).icontains(flt.text, autoescape=True),
                cast(_jobs.c.last_error, Text).icontains(flt.text, autoescape=True),
            )
        )
    return query


@dataclass(frozen=True, slots=True)
class DispatchRef:
    """What a publisher needs to hand a job to the broker."""

    id: int
    type: str
    queue: str
    priority: int
    attempt: int
    time_limit_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class ExpiredLease:
    id: int
    type: str
    status: JobStatus
    lease_token: int
    lease_owner: str | None
    attempt: int
    budget_start_attempt: int
    retry_policy: dict[str, Any] | None


class LeaseRepository:
    """Lease upkeep and dispatch bookkeeping: columns beside ``status``, never ``status`` itself."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def extend(self, held: dict[int, int], ttl_seconds: float) -> set[int]:
        """Extend the leases in ``held`` (job id → token); returns the ids still held."""
        if not held:
            return set()
        ids = list(held)
        rows = self._conn.exec_driver_sql(
            queries.EXTEND_LEASES,
            {"ids": ids, "tokens": [held[i] for i in ids], "lease_ttl": ttl_seconds},
        )
        return {r[0] for r in rows}

    def record_progress(self, job_id: int, lease_token: int, progress: dict[str, Any]) -> bool:
        row = self._conn.exec_driver_sql(
            queries.RECORD_PROGRESS,
            {
                "job_id": job_id,
                "lease_token": lease_token,
                "progress": json.dumps(progress, separators=(",", ":")),
            },
        ).first()
        return row is not None

    def undispatched(self, grace_seconds: float, limit: int = 500) -> list[DispatchRef]:
        rows = self._conn.exec_driver_sql(
            queries.UNDISPATCHED_JOBS, {"grace": grace_seconds, "limit": limit}
        ).mappings()
        return [DispatchRef(**r) for r in rows]

    def lost_dispatches(self, after_seconds: float, limit: int = 500) -> list[DispatchRef]:
        rows = self._conn.exec_driver_sql(
            queries.LOST_DISPATCHES, {"after": after_seconds, "limit": limit}
        ).mappings()
        return [DispatchRef(**r) for r in rows]

    def mark_dispatched(self, ids: Sequence[int]) -> None:
        if ids:
            self._conn.exec_driver_sql(queries.MARK_DISPATCHED, {"ids": list(ids)})

    def clear_dispatched(self, ids: Sequence[int]) -> None:
        if ids:
            self._conn.exec_driver_sql(queries.CLEAR_DISPATCHED, {"ids": list(ids)})


class QueueLimitRepository:
    """Per-queue concurrency limits, enforced at claim time under the limit row's lock."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def set(self, queue: str, max_running: int) -> None:
        self._conn.exec_driver_sql(
            queries.SET_QUEUE_LIMIT, {"queue": queue, "max_running": max_running}
        )

    def clear(self, queue: str) -> bool:
        return self._conn.exec_driver_sql(queries.CLEAR_QUEUE_LIMIT, {"queue": queue}).rowcount > 0

    def all(self) -> dict[str, int]:
        rows = self._conn.exec_driver_sql(queries.LIMITED_QUEUES).all()
        return {row[0]: row[1] for row in rows}

    def lock(self, queue: str) -> int | None:
        """The queue's limit, locked until the transaction ends; None if it has none."""
        row = self._conn.exec_driver_sql(queries.LOCK_QUEUE_LIMIT, {"queue": queue}).first()
        return None if row is None else int(row[0])

    def leased(self, queue: str) -> int:
        return int(
            self._conn.exec_driver_sql(queries.LEASED_IN_QUEUE, {"queue": queue}).scalar_one()
        )

    def admissions(self) -> list[DispatchRef]:
        rows = self._conn.exec_driver_sql(queries.ADMISSIONS).mappings()
        return [DispatchRef(**r) for r in rows]
