"""A queue's concurrency limit holds across the fleet, enforced by Postgres, nothing dropped."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.producer import submit_jobs
from jobengine.store.database import transaction
from jobengine.store.jobs_repository import QueueLimitRepository
from tests.fleet import handlers  # noqa: F401
from tests.fleet.conftest import Fleet, wait_until

S = JobStatus
LIMIT = 2
JOBS = 24


def _max_concurrent_from_history(fleet: Fleet, queue: str) -> int:
    """Sweep the history in id order: a lease starts at `→ claimed`, ends when it leaves."""
    with fleet.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT h.from_status, h.to_status FROM job_history h"
                " JOIN jobs j ON j.id = h.job_id WHERE j.queue = :q ORDER BY h.id"
            ),
            {"q": queue},
        ).all()
    leased = {"claimed", "running"}
    current = peak = 0
    for from_status, to_status in rows:
        if to_status in leased and from_status not in leased:
            current += 1
        elif from_status in leased and to_status not in leased:
            current -= 1
        peak = max(peak, current)
    return peak


@pytest.mark.parametrize("chunk_size", [1, 10], ids=["one-per-message", "chunks"])
def test_limit_two_on_a_queue_served_by_four_processes_never_runs_more_than_two(
    fleet: Fleet, chunk_size: int
) -> None:
    with transaction(fleet.engine) as conn:
        QueueLimitRepository(conn).set("gpu", LIMIT)
    fleet.start_worker("w1", concurrency=2)  # consumes jobs.sleep: routing is by type
    fleet.start_worker("w2", concurrency=2)
    fleet.start_reaper("reaper-1")
    jobs = submit_jobs(
        fleet.engine,
        fleet.publisher(),
        [NewJob(type="sleep", queue="gpu", payload={"seconds": 0.2}) for _ in range(JOBS)],
        chunk_size=chunk_size,
    )

    wait_until(
        lambda: all(fleet.job(j.id).status is S.COMPLETED for j in jobs), 120, "all completed"
    )
    assert _max_concurrent_from_history(fleet, "gpu") == LIMIT
    for job in jobs:
        assert fleet.job(job.id).attempt == 1
