"""Tenant quotas at submission: a refusal writes nothing, a batch is all or nothing, racing
submitters never take a tenant past its quota, and jobs the leader must publish (a capped
tenant's, a fair-shared queue's) are left unpublished by their producer."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from jobengine.domain.job import NewJob
from jobengine.domain.run import RunJobSpec, RunSpec
from jobengine.enqueue import enqueue, enqueue_many
from jobengine.producer import submit_jobs
from jobengine.quotas.book import REFRESH_SECONDS, Quota, QuotaRepository
from jobengine.quotas.errors import QuotaExceeded
from jobengine.runs.service import submit_run
from jobengine.store.database import make_engine, transaction
from jobengine.submission import submit, submit_many
from tests.api.conftest import RecordingPublisher
from tests.fleet.conftest import wait_until
from tests.integration.test_submission import row_counts

RACERS = 16


def set_quota(engine: Engine, tenant: str, **limits: int) -> None:
    with transaction(engine) as conn:
        QuotaRepository(conn).set(Quota(tenant, **limits))


def job(tenant: str = "acme", queue: str = "default") -> NewJob:
    return NewJob(type="noop", tenant_id=tenant, queue=queue)


def test_a_submission_over_the_quota_is_refused_naming_tenant_quota_and_count_and_writes_nothing(
    engine: Engine,
) -> None:
    set_quota(engine, "acme", max_queued=3)
    with transaction(engine) as conn:
        submit_many(conn, [job(), job(), job()])
    with transaction(engine) as conn:
        before = row_counts(conn)
        with pytest.raises(QuotaExceeded) as refused:
            submit(conn, job())
        assert row_counts(conn) == before
    with transaction(engine) as conn:
        assert row_counts(conn) == before == (3, 3, 3)
    err = refused.value
    assert (err.code, err.retryable, err.retry_after_seconds) == ("QUOTA_EXCEEDED", True, 5)
    assert "'acme'" in err.message and "3 job(s) queued" in err.message
    assert "max_queued is 3" in err.message
    assert "jobengine quotas set acme" in err.hint


def test_a_batch_that_would_pass_the_quota_writes_none_of_its_jobs(engine: Engine) -> None:
    set_quota(engine, "acme", max_queued=5)
    with transaction(engine) as conn:
        submit(conn, job())
    with pytest.raises(QuotaExceeded) as refused, transaction(engine) as conn:
        submit_many(conn, [job("other"), *[job() for _ in range(5)]])
    assert (refused.value.queued, refused.value.adding) == (1, 5)
    with transaction(engine) as conn:
        assert row_counts(conn) == (1, 1, 1)
        submit_many(conn, [job("other"), *[job() for _ in range(4)]])
        assert row_counts(conn) == (6, 6, 6)


def test_running_jobs_do_not_count_against_the_queued_quota_and_other_tenants_are_free(
    engine: Engine,
) -> None:
    set_quota(engine, "acme", max_queued=1)
    with transaction(engine) as conn:
        [(first, _)] = submit_many(conn, [job()])
        submit_many(conn, [job("other") for _ in range(10)])
        conn.execute(
            text(
                "UPDATE jobs SET status = 'running', lease_owner = 'w', lease_expires_at = now()"
                " WHERE id = :id"
            ),
            {"id": first.id},
        )
    with transaction(engine) as conn:
        submit(conn, job())
    with pytest.raises(QuotaExceeded), transaction(engine) as conn:
        submit(conn, job())


@pytest.fixture
def racing_engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url, pool_size=RACERS, max_overflow=0)
    yield eng
    eng.dispose()


def test_racing_submitters_never_take_a_tenant_past_its_quota(racing_engine: Engine) -> None:
    set_quota(racing_engine, "acme", max_queued=20)
    barrier = threading.Barrier(RACERS)

    def submit_three(_: int) -> int:
        with racing_engine.connect() as conn:
            barrier.wait(30)
            try:
                with conn.begin():
                    return len(submit_many(conn, [job(), job(), job()]))
            except QuotaExceeded:
                return 0

    with ThreadPoolExecutor(max_workers=RACERS) as pool:
        admitted = list(pool.map(submit_three, range(RACERS)))
    assert sum(admitted) == 18  # six batches of three fit in 20; a seventh would make 21
    with transaction(racing_engine) as conn:
        assert row_counts(conn) == (18, 18, 18)


def test_a_quota_written_by_another_process_applies_within_seconds(engine: Engine) -> None:
    with transaction(engine) as conn:
        submit(conn, job())  # this process now caches "acme has no quota"
        conn.execute(text("INSERT INTO tenant_quotas (tenant_id, max_queued) VALUES ('acme', 1)"))
    started = time.monotonic()

    def refused() -> bool:
        try:
            with transaction(engine) as conn:
                conn.execute(text("SAVEPOINT probe"))
                submit(conn, job())
                conn.execute(text("ROLLBACK TO SAVEPOINT probe"))
        except QuotaExceeded:
            return True
        return False

    wait_until(refused, 10, "the new quota refuses")
    assert time.monotonic() - started < REFRESH_SECONDS + 1


def test_enqueue_over_the_quota_raises_and_leaves_the_callers_transaction_usable(
    engine: Engine,
) -> None:
    set_quota(engine, "acme", max_queued=1)
    with Session(engine) as session:
        enqueue(session, "noop", tenant_id="acme", project_id="p")
        with pytest.raises(QuotaExceeded):
            enqueue_many(session, [job()])
        enqueue(session, "noop", tenant_id="other", project_id="p")
        session.commit()
    with transaction(engine) as conn:
        assert row_counts(conn) == (2, 2, 2)


def test_a_capped_tenants_jobs_and_a_fair_queues_jobs_are_left_for_the_leader_to_publish(
    engine: Engine,
) -> None:
    set_quota(engine, "capped", max_running=2)
    with transaction(engine) as conn:
        QuotaRepository(conn).set_fair_queue("shared", 4)
    publisher = RecordingPublisher()
    jobs = submit_jobs(
        engine,
        publisher,
        [job("capped"), job("acme", "shared"), job("acme"), job("capped", "shared")],
    )
    assert publisher.sent == [jobs[2].id]
    with transaction(engine) as conn:
        marks = conn.execute(text("SELECT id, dispatched_at IS NOT NULL FROM jobs ORDER BY id"))
        assert {row[0]: row[1] for row in marks} == {
            jobs[0].id: False,
            jobs[1].id: False,
            jobs[2].id: True,
            jobs[3].id: False,
        }


def test_a_run_whose_jobs_would_pass_the_quota_writes_neither_the_run_nor_its_jobs(
    engine: Engine,
) -> None:
    set_quota(engine, "acme", max_queued=2)
    spec = RunSpec(
        tenant_id="acme",
        project_id="etl",
        name="three",
        jobs=tuple(RunJobSpec(key=k, type="noop") for k in "abc"),
        edges=(("a", "b"), ("b", "c")),
    )
    with pytest.raises(QuotaExceeded) as refused, transaction(engine) as conn:
        submit_run(conn, spec, actor="test")
    assert (refused.value.queued, refused.value.adding) == (0, 3)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM runs")).scalar_one() == 0
        assert row_counts(conn) == (0, 0, 0)


def test_retry_after_is_the_excess_at_the_tenants_recent_time_per_job_shared_by_its_running(
    engine: Engine,
) -> None:
    with transaction(engine) as conn:
        ids = [j.id for j, _ in submit_many(conn, [job() for _ in range(5)])]
        # Two jobs that ran 2 s each, one running now (written as a finished history would
        # leave them), two still queued.
        conn.execute(
            text(
                "UPDATE jobs SET status = 'completed', started_at = now() - interval '10 s',"
                " completed_at = now() - interval '8 s' WHERE id = ANY(:done)"
            ),
            {"done": ids[:2]},
        )
        conn.execute(
            text(
                "UPDATE jobs SET status = 'running', lease_owner = 'w',"
                " lease_expires_at = now() + interval '1 minute' WHERE id = :id"
            ),
            {"id": ids[2]},
        )
    set_quota(engine, "acme", max_queued=2)
    with transaction(engine) as conn, pytest.raises(QuotaExceeded) as refused:
        submit_many(conn, [job(), job(), job()])

    # 2 queued + 3 more - a quota of 2: 3 jobs to start, 2 s each, one at a time.
    assert refused.value.retry_after_seconds == 6
    assert "Retry after about 6 s" in refused.value.hint
