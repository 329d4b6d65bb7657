"""What the console's pages read that no REST route answers: counts per state that stay cheap
at millions of rows, queue depth, leases, and the finished-job window the charts draw.

Everything else a page shows comes from the REST routes' own handlers and models, so the
console and the API cannot disagree about a job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from jobengine.console import queries
from jobengine.domain.status import JobStatus
from jobengine.store.database import run_all, run_statement
from jobengine.store.jobs_repository import JobFilter, JobsRepository, StateCount

EXACT_UP_TO = 10_000
"""A state with more matching jobs than this shows the planner's estimate, labelled."""
COUNT_BUDGET_MS = 200
"""The exact counts of one page view together; the states left when it runs out are estimated."""


def state_counts(conn: Connection, flt: JobFilter) -> dict[JobStatus, StateCount]:
    """Counts per state for the jobs page: each state counted up to ``EXACT_UP_TO`` when that
    fits in ``COUNT_BUDGET_MS``, else the planner's estimate (labelled on the page)."""
    return JobsRepository(conn).count_in_states(flt, cap=EXACT_UP_TO, budget_ms=COUNT_BUDGET_MS)


@dataclass(frozen=True, slots=True)
class QueueDepth:
    queue: str
    waiting: int
    oldest_waiting_seconds: float


def queue_depths(conn: Connection) -> list[QueueDepth]:
    return [QueueDepth(**r) for r in run_all(conn, queries.QUEUE_DEPTH, {})]


def leases(conn: Connection, limit: int = 200) -> list[dict[str, Any]]:
    return run_all(conn, queries.LEASES, {"limit": limit})


def schedules(conn: Connection) -> list[dict[str, Any]] | None:
    """The schedules and their state, or None where the schedules table does not exist."""
    present = run_statement(conn, queries.SCHEDULES_TABLE, {})
    if present is None or not present["present"]:
        return None
    return run_all(conn, queries.SCHEDULES, {})


@dataclass(frozen=True, slots=True)
class Window:
    since: datetime
    bucket_seconds: int
    buckets: int

    @classmethod
    def last(cls, minutes: int, now: datetime | None = None) -> Window:
        """The last ``minutes``, in 30 buckets on whole bucket boundaries."""
        bucket = max(60, minutes * 60 // 30)
        moment = (now or datetime.now(UTC)).timestamp()
        end = (int(moment) // bucket + 1) * bucket
        return cls(
            since=datetime.fromtimestamp(end - bucket * 30, UTC),
            bucket_seconds=bucket,
            buckets=30,
        )

    def starts(self) -> list[datetime]:
        step = timedelta(seconds=self.bucket_seconds)
        return [self.since + step * i for i in range(self.buckets)]


@dataclass(frozen=True, slots=True)
class Series:
    type: str
    completed: list[int]
    failed: list[int]


def first_history_id(conn: Connection, since: datetime) -> int:
    """The id of the first history row at or after ``since`` (one past the last if none)."""
    bounds = run_statement(conn, queries.HISTORY_BOUNDS, {})
    if bounds is None or bounds["first"] is None:
        return 0
    low, high = int(bounds["first"]), int(bounds["last"]) + 1
    while low < high:
        middle = (low + high) // 2
        row = run_statement(conn, queries.HISTORY_AT_OR_AFTER, {"id": middle})
        if row is None or row["at"] >= since:
            high = middle
        else:
            low = int(row["id"]) + 1
    return low


def throughput(conn: Connection, window: Window, tenant_id: str | None) -> list[Series]:
    """Completed and failed attempts per type in each bucket of ``window``."""
    rows = run_all(
        conn,
        queries.OUTCOMES_BY_BUCKET,
        {
            "first_id": first_history_id(conn, window.since),
            "since": window.since,
            "bucket_seconds": window.bucket_seconds,
            "tenant_id": tenant_id,
        },
    )
    index = {start: i for i, start in enumerate(window.starts())}
    by_type: dict[str, Series] = {}
    for row in rows:
        series = by_type.setdefault(
            row["type"], Series(row["type"], [0] * window.buckets, [0] * window.buckets)
        )
        i = index.get(row["bucket"].astimezone(UTC))
        if i is not None:
            series.completed[i] += int(row["completed"])
            series.failed[i] += int(row["failed"])
    return [by_type[t] for t in sorted(by_type)]


@dataclass(frozen=True, slots=True)
class Latency:
    type: str
    n: int
    """Attempts whose run time was measured."""
    wait_seconds: list[float]
    """p50, p90, p99 of submit to start (zeros when no first attempt started in the window)."""
    run_seconds: list[float]
    """p50, p90, p99 of run time."""


def latencies(conn: Connection, since: datetime, tenant_id: str | None) -> list[Latency]:
    params = {"first_id": first_history_id(conn, since), "since": since, "tenant_id": tenant_id}
    rows = run_all(conn, queries.LATENCY_PERCENTILES, params)
    return [
        Latency(
            type=r["type"],
            n=int(r["n"]),
            wait_seconds=[float(v) for v in r["wait_seconds"] or (0.0, 0.0, 0.0)],
            run_seconds=[float(v) for v in r["run_seconds"] or (0.0, 0.0, 0.0)],
        )
        for r in rows
    ]
