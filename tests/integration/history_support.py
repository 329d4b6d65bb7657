"""Helpers for the counter and retention tests: a mixed workload through the guard, the old
truth (a count over ``job_history``), the scrape, and ageing rows past a cut-off."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Connection, Engine, text

from jobengine import guard
from jobengine.api.metrics import make_registry
from jobengine.domain.dead_letter import DeadLetterReason
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.guard import Step
from jobengine.store.database import transaction

ERROR = {"code": "BOOM", "class": "RuntimeError", "message": "boom"}
Counts = dict[tuple[str, str], tuple[int, int]]


def new_job(conn: Connection, *, schedule: bool = True, tenant: str = "t1") -> int:
    job = guard.create_job(conn, NewJob(type="noop", tenant_id=tenant), schedule=schedule)
    assert job is not None
    return job.id


def start(conn: Connection, job_id: int) -> int:
    """scheduled → claimed → running; the lease token."""
    claimed = guard.transition(conn, job_id, JobStatus.CLAIMED, lease_owner="w").job
    return guard.transition(
        conn, job_id, JobStatus.RUNNING, lease_token=claimed.lease_token
    ).job.lease_token


def complete(conn: Connection, job_id: int, token: int) -> None:
    guard.transition(conn, job_id, JobStatus.COMPLETED, lease_token=token, result={"ok": 1})


def fail_for_good(conn: Connection, job_id: int, token: int) -> None:
    guard.transition(
        conn,
        job_id,
        JobStatus.FAILED,
        lease_token=token,
        error=ERROR,
        dead_letter_reason=DeadLetterReason.NON_RETRYABLE,
    )


def workload(engine: Engine, jobs: int) -> dict[str, list[int]]:
    """``jobs`` jobs of each kind: completed, retried then completed, lease expired while
    running and rescheduled, handed back before start, failed for good, cancelled, and
    left running; each kind's job ids."""
    kinds: dict[str, list[int]] = {}
    with transaction(engine) as conn:
        for _ in range(jobs):
            done = new_job(conn)
            complete(conn, done, start(conn, done))
            retried = new_job(conn)
            guard.transition(
                conn,
                retried,
                [Step(JobStatus.FAILED), Step(JobStatus.SCHEDULED, "retry")],
                lease_token=start(conn, retried),
                error=ERROR,
            )
            complete(conn, retried, start(conn, retried))
            expired = new_job(conn)
            guard.transition(
                conn,
                expired,
                [Step(JobStatus.FAILED, "lease_expired"), Step(JobStatus.SCHEDULED, "retry")],
                lease_token=start(conn, expired),
                error=ERROR,
            )
            handed_back = new_job(conn)
            guard.transition(conn, handed_back, JobStatus.CLAIMED, lease_owner="w")
            guard.transition(
                conn, handed_back, Step(JobStatus.SCHEDULED, "lease_expired_before_start")
            )
            failed = new_job(conn)
            fail_for_good(conn, failed, start(conn, failed))
            cancelled = new_job(conn)
            guard.transition(conn, cancelled, JobStatus.CANCELLED)
            running = new_job(conn)
            start(conn, running)
            for kind, job_id in (
                ("completed", done),
                ("retried", retried),
                ("expired", expired),
                ("handed_back", handed_back),
                ("failed", failed),
                ("cancelled", cancelled),
                ("running", running),
            ):
                kinds.setdefault(kind, []).append(job_id)
    return kinds


def history_truth(engine: Engine) -> Counts:
    """Transitions by step as ``/metrics`` used to count them: over all of ``job_history``."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT coalesce(from_status::text, ''), to_status::text, count(*), "
                "count(*) FILTER (WHERE reason IN ('lease_expired', "
                "'lease_expired_before_start')) FROM job_history GROUP BY 1, 2"
            )
        )
        return {(f, t): (int(n), int(le)) for f, t, n, le in rows}


def jobs_truth(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT status::text, count(*) FROM jobs GROUP BY 1"))
        counted = {status: int(n) for status, n in rows}
    return {status.value: counted.get(status.value, 0) for status in JobStatus}


def scrape(engine: Engine) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The ``/metrics`` body of an API process on ``engine``, as samples."""
    body = generate_latest(make_registry(engine, 30.0)).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def scraped_steps(
    got: dict[tuple[str, tuple[tuple[str, str], ...]], float],
) -> dict[tuple[str, str], int]:
    return {
        (dict(labels)["from_state"], dict(labels)["to_state"]): int(value)
        for (name, labels), value in got.items()
        if name == "jobengine_transitions_total"
    }


def scraped_jobs(got: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[str, int]:
    return {
        dict(labels)["state"]: int(value)
        for (name, labels), value in got.items()
        if name == "jobengine_jobs"
    }


def age(engine: Engine, job_ids: Sequence[int], days: int) -> None:
    """Move jobs and every row about them ``days`` into the past, as if they had finished
    then (the rows keep the transaction ids they were written with)."""
    params: dict[str, Any] = {"ids": list(job_ids), "days": days}
    with engine.begin() as conn:
        for sql in (
            "UPDATE jobs SET completed_at = completed_at - make_interval(days => :days), "
            "created_at = created_at - make_interval(days => :days) WHERE id = ANY(:ids)",
            "UPDATE job_history SET at = at - make_interval(days => :days) "
            "WHERE job_id = ANY(:ids)",
            "UPDATE job_events SET occurred_at = occurred_at - make_interval(days => :days) "
            "WHERE job_id = ANY(:ids)",
            "UPDATE dead_letters SET status_changed_at = status_changed_at "
            "- make_interval(days => :days) WHERE job_id = ANY(:ids)",
        ):
            conn.execute(text(sql), params)


def rows_of(engine: Engine, job_ids: Sequence[int]) -> dict[str, int]:
    """How many rows each table holds about these jobs."""
    with engine.connect() as conn:
        return {
            table: int(
                conn.execute(
                    text(f"SELECT count(*) FROM {table} WHERE {column} = ANY(:ids)"),
                    {"ids": list(job_ids)},
                ).scalar_one()
            )
            for table, column in (
                ("jobs", "id"),
                ("job_history", "job_id"),
                ("job_events", "job_id"),
                ("dead_letters", "job_id"),
            )
        }
