"""Priority end to end: with a backlog, the most urgent job starts first."""

from __future__ import annotations

from sqlalchemy import text

from jobengine.catalogue import announce
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.job_types import registry
from jobengine.producer import submit_jobs
from tests.fleet import handlers  # noqa: F401
from tests.fleet.conftest import Fleet, wait_until

S = JobStatus
BACKLOG = 200
BOUND = 0.75
"""The urgent job, submitted last, must start before at least 75% of the backlog."""


def test_high_priority_job_submitted_last_starts_before_most_of_a_200_job_backlog(
    fleet: Fleet,
) -> None:
    announce(fleet.engine, registry.specs(), "tests")  # as the fleet's workers did before
    publisher = fleet.publisher()
    backlog = submit_jobs(
        fleet.engine, publisher, [NewJob(type="effect", priority=0) for _ in range(BACKLOG)]
    )
    [urgent] = submit_jobs(fleet.engine, publisher, [NewJob(type="effect", priority=9)])
    fleet.start_worker("w1")

    wait_until(
        lambda: all(fleet.job(j.id).status is S.COMPLETED for j in [*backlog, urgent]),
        120,
        "everything completed",
    )
    with fleet.engine.connect() as conn:
        started_after = conn.execute(
            text(
                "SELECT count(*) FROM jobs WHERE priority = 0 AND started_at > "
                "(SELECT started_at FROM jobs WHERE id = :urgent)"
            ),
            {"urgent": urgent.id},
        ).scalar_one()
    assert started_after >= BOUND * BACKLOG, started_after
