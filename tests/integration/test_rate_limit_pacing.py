"""Pacing at promotion (``jobengine.limits.pacing``): a leader that stalled for longer than a
limit's tolerance does not release every job that came due meanwhile at once.

The stall is made by moving the submission a minute into the past (its slots, births and
bucket alike), as if the leader had been frozen since; admissions are the moments Postgres
recorded each job reaching ``scheduled``, replayed through a GCRA of the limit's own rate and
burst.
"""

from __future__ import annotations

import itertools
from datetime import datetime

from sqlalchemy import Engine, text

from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.limits import registry
from jobengine.limits.definition import RateLimit, Scope
from jobengine.store.database import transaction
from jobengine.submission import submit_many
from tests.fleet.test_rate_limits import overdrafts
from tests.integration.test_leadership import reaper

S = JobStatus
TEN = RateLimit("ten", Scope.TYPE, rate=10, per="second", burst=5, job_type="noop")
STALL = "interval '60 seconds'"


def admissions(engine: Engine) -> list[datetime]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT at FROM job_history WHERE to_status = 'scheduled'"))
        return [r[0] for r in rows]


def test_a_leader_stalled_past_the_burst_tolerance_admits_within_the_bucket_after_it(
    engine: Engine,
) -> None:
    with transaction(engine) as conn:
        registry.set_limit(conn, TEN)
        jobs = submit_many(conn, [NewJob(type="noop", payload={"n": n}) for n in range(30)])
    held = [job.id for job, _ in jobs if job.status is S.PENDING]
    with transaction(engine) as conn:
        conn.execute(text(f"UPDATE jobs SET not_before = not_before - {STALL}"))
        conn.execute(text(f"UPDATE job_history SET at = at - {STALL}"))
        conn.execute(text(f"UPDATE rate_limit_buckets SET tat = tat - {STALL}"))

    report = reaper(engine, "reaper-a").tick()

    assert len(held) == 25
    assert len(report.promoted) == 5, "a burst after the stall, not all 25 due jobs"
    assert overdrafts(admissions(engine), 10, 5) == []
    with engine.connect() as conn:
        waiting = (
            conn.execute(
                text(
                    "SELECT extract(epoch FROM not_before - now()) FROM jobs"
                    " WHERE status = 'pending' ORDER BY not_before"
                )
            )
            .scalars()
            .all()
        )
        attempts = conn.execute(text("SELECT max(attempt) FROM jobs")).scalar_one()
    assert len(waiting) == 20
    assert all(later - earlier > 0.099 for earlier, later in itertools.pairwise(waiting)), (
        "the rest wait again, a token apart"
    )
    assert waiting[0] > 0
    assert attempts == 0, "waiting again cost no attempt"
