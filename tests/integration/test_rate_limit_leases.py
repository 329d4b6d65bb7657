"""Token leases (``jobengine.limits.leases``): a limit far from biting writes its bucket once
per lease, a lease that bites still never lets admissions run ahead of the bucket, and a lease
that does not hold (rolled back, a forked child's parent's) writes no job under it.

Bucket writes are counted by a trigger; admissions are the births' ``at`` as Postgres recorded
them, replayed through a GCRA of the limit's own rate and burst.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime

import pytest
from sqlalchemy import Engine, text

from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.limits import registry
from jobengine.limits.definition import RateLimit, Scope
from jobengine.limits.leases import most_leased
from jobengine.store.database import transaction
from jobengine.submission import submit, submit_many
from tests.fleet.test_rate_limits import overdrafts

S = JobStatus
NEVER_BITES = RateLimit(
    "loose", Scope.TYPE, rate=1_000_000, per="second", burst=1_000_000, job_type="noop"
)
BITES = RateLimit("bites", Scope.TYPE, rate=20, per="second", burst=200, job_type="noop")
SLOW_DEEP = RateLimit("deep", Scope.TYPE, rate=1000, per="second", burst=1_000_000, job_type="noop")
"""Leasable over a window of seconds, which the tests of leases that must not be spent take,
so that only Postgres's check, not the lease lapsing, can stop them."""


@pytest.fixture
def long_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("jobengine.limits.leases.LEASE_SECONDS", 30.0)


@pytest.fixture
def counted(engine: Engine) -> Iterator[Engine]:
    """``engine``, its bucket writes counted in ``bucket_writes``."""
    with transaction(engine) as conn:
        conn.execute(
            text(
                "CREATE TABLE bucket_writes (at timestamptz NOT NULL DEFAULT now());"
                "CREATE FUNCTION count_bucket_write() RETURNS trigger LANGUAGE plpgsql AS"
                " $$ BEGIN INSERT INTO bucket_writes DEFAULT VALUES; RETURN NEW; END $$;"
                "CREATE TRIGGER bucket_written AFTER INSERT OR UPDATE ON rate_limit_buckets"
                " FOR EACH ROW EXECUTE FUNCTION count_bucket_write()"
            )
        )
    yield engine


def bucket_writes(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM bucket_writes")).scalar_one())


def set_limit(engine: Engine, limit: RateLimit) -> None:
    with transaction(engine) as conn:
        registry.set_limit(conn, limit)


def births(engine: Engine, status: S) -> list[datetime]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT at FROM job_history WHERE from_status IS NULL AND to_status = :s"),
            {"s": status.value},
        )
        return [r[0] for r in rows]


def submit_one_by_one(engine: Engine, count: int) -> None:
    for n in range(count):
        with transaction(engine) as conn:
            submit(conn, NewJob(type="noop", payload={"n": n}))


def test_a_limit_far_from_biting_writes_its_bucket_once_per_lease_not_once_per_job(
    counted: Engine,
) -> None:
    set_limit(counted, NEVER_BITES)
    submit_one_by_one(counted, 100)

    assert len(births(counted, S.SCHEDULED)) == 100
    # A lease lasts LEASE_SECONDS: a slow machine may need several, never one per job.
    assert 1 <= bucket_writes(counted) <= 20


def test_batches_far_from_their_limit_share_a_lease(counted: Engine) -> None:
    set_limit(counted, NEVER_BITES)
    for n in range(10):
        with transaction(counted) as conn:
            submit_many(conn, [NewJob(type="noop", payload={"n": n, "k": k}) for k in range(50)])

    assert len(births(counted, S.SCHEDULED)) == 500
    assert 1 <= bucket_writes(counted) <= 5


def test_admissions_from_leases_never_run_ahead_of_a_bucket_that_bites(counted: Engine) -> None:
    assert most_leased(BITES) > 0, "leased while it has room"
    set_limit(counted, BITES)
    submit_one_by_one(counted, 400)

    admitted = births(counted, S.SCHEDULED)
    assert overdrafts(admitted, 20, 200) == []
    assert len(births(counted, S.PENDING)) > 0, "the limit did bite"
    assert bucket_writes(counted) < 400, "some jobs were admitted from leases"


def test_a_lease_rolled_back_admits_nothing_and_the_next_job_books_its_slot(
    counted: Engine, long_window: None
) -> None:
    set_limit(counted, SLOW_DEEP)
    with counted.connect() as conn, conn.begin() as rolled_back:
        submit(conn, NewJob(type="noop", payload={"n": 0}))  # takes a lease
        rolled_back.rollback()
    with transaction(counted) as conn:
        job, _ = submit(conn, NewJob(type="noop", payload={"n": 1}))
        ahead = conn.execute(
            text("SELECT extract(epoch FROM tat - now()) FROM rate_limit_buckets")
        ).scalar_one()

    assert job.status is S.SCHEDULED
    assert bucket_writes(counted) == 1, "the job booked or leased again, in its own transaction"
    assert ahead > 0, "its tokens are booked in the bucket"
    assert len(births(counted, S.SCHEDULED)) == 1


def test_a_forked_child_spends_none_of_its_parents_leases(
    counted: Engine, long_window: None
) -> None:
    set_limit(counted, SLOW_DEEP)
    submit_one_by_one(counted, 2)
    before = bucket_writes(counted)
    pid = os.fork()
    if pid == 0:  # the child: a connection of its own, the parent's leases gone
        code = 1
        try:
            counted.dispose(close=False)
            submit_one_by_one(counted, 1)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    assert before == 1, "one lease served the parent's two jobs"
    assert bucket_writes(counted) == 2, "the child took a lease of its own"


def test_a_limit_set_again_after_a_lease_was_taken_admits_nothing_more_under_it(
    counted: Engine, long_window: None
) -> None:
    set_limit(counted, SLOW_DEEP)
    submit_one_by_one(counted, 1)  # takes a lease
    set_limit(counted, SLOW_DEEP)  # set again: the lease may no longer be spent
    submit_one_by_one(counted, 1)

    assert bucket_writes(counted) == 2, "the second job took its tokens anew"
    assert len(births(counted, S.SCHEDULED)) == 2
