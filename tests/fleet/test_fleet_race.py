"""Many workers, many jobs: each job completes once, each successful attempt has one effect."""

from __future__ import annotations

from sqlalchemy import text

from jobengine.domain.job import NewJob
from jobengine.producer import submit_jobs
from tests.fleet import handlers  # noqa: F401
from tests.fleet.conftest import Fleet, wait_until

JOBS = 2_000


def test_four_worker_processes_complete_2000_jobs_exactly_once(fleet: Fleet) -> None:
    fleet.start_worker("w1", concurrency=2)
    fleet.start_worker("w2", concurrency=2)
    publisher = fleet.publisher()
    for start in range(0, JOBS, 500):
        submit_jobs(
            fleet.engine, publisher, [NewJob(type="effect") for _ in range(start, start + 500)]
        )

    def remaining() -> bool:
        with fleet.engine.connect() as conn:
            left = conn.execute(
                text("SELECT count(*) FROM jobs WHERE status <> 'completed'")
            ).scalar()
        return left == 0

    wait_until(remaining, 300, "all jobs completed")
    with fleet.engine.connect() as conn:
        finalized_twice = conn.execute(
            text(
                "SELECT job_id FROM job_history "
                "WHERE to_status IN ('completed', 'failed', 'cancelled')"
                " GROUP BY job_id HAVING count(*) > 1"
            )
        ).all()
        completions = conn.execute(
            text("SELECT count(*) FROM job_history WHERE to_status = 'completed'")
        ).scalar()
        effect_per_attempt = conn.execute(
            text(
                "SELECT j.id, j.attempt, count(e.id) FROM jobs j "
                "LEFT JOIN test_effects e ON e.job_id = j.id AND e.attempt = j.attempt "
                "GROUP BY j.id, j.attempt HAVING count(e.id) <> 1"
            )
        ).all()
        stray_effects = conn.execute(
            text(
                "SELECT count(*) FROM test_effects e JOIN jobs j ON j.id = e.job_id "
                "WHERE e.attempt <> j.attempt"
            )
        ).scalar()
        pids = conn.execute(text("SELECT count(DISTINCT pid) FROM test_effects")).scalar()
    assert finalized_twice == []
    assert completions == JOBS
    assert effect_per_attempt == []
    assert stray_effects == 0
    assert pids == 4
