"""Wait and run time histograms on ``/metrics``: each start and each attempt's end carries its
duration in the outbox, the fold puts it in its bucket, and a scrape reads a few rows per queue
however much history there is."""

from __future__ import annotations

from sqlalchemy import Connection, Engine, text

from jobengine import guard
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.guard import Step
from jobengine.store.database import transaction
from jobengine.store.metrics_repository import DURATION_BUCKETS
from tests.integration.history_support import ERROR, complete, scrape, start

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def job_in(conn: Connection, queue: str) -> int:
    job = guard.create_job(conn, NewJob(type="noop", tenant_id="t1", queue=queue), schedule=True)
    assert job is not None
    return job.id


def backdate(conn: Connection, job_id: int, column: str, seconds: float) -> None:
    conn.exec_driver_sql(
        f"UPDATE jobs SET {column} = now() - make_interval(secs => %(s)s) WHERE id = %(id)s",
        {"s": seconds, "id": job_id},
    )


def bucket(got: Samples, name: str, le: str, **labels: str) -> float:
    return got[(f"{name}_bucket", tuple(sorted({**labels, "le": le}.items())))]


def test_a_job_that_waited_90_seconds_and_ran_two_hours_lands_in_those_buckets(
    engine: Engine,
) -> None:
    with transaction(engine) as conn:
        job_id = job_in(conn, "reports")
        backdate(conn, job_id, "scheduled_at", 90)
    with transaction(engine) as conn:
        token = start(conn, job_id)
        backdate(conn, job_id, "started_at", 2 * 3600)
    with transaction(engine) as conn:
        complete(conn, job_id, token)
    got = scrape(engine)
    wait, run = "jobengine_job_wait_seconds", "jobengine_job_run_seconds"
    assert bucket(got, wait, "60.0", queue="reports") == 0
    assert bucket(got, wait, "120.0", queue="reports") == 1
    assert bucket(got, wait, "+Inf", queue="reports") == 1
    assert 90 <= got[(f"{wait}_sum", (("queue", "reports"),))] < 100
    done = {"queue": "reports", "outcome": "completed"}
    assert bucket(got, run, "3600.0", **done) == 0
    assert bucket(got, run, "7200.0", **done) == 0  # just over two hours
    assert bucket(got, run, "21600.0", **done) == 1
    assert got[(f"{run}_count", tuple(sorted(done.items())))] == 1


def test_every_attempt_counts_once_by_how_it_ended_and_a_second_scrape_adds_nothing(
    engine: Engine,
) -> None:
    with transaction(engine) as conn:
        job_id = job_in(conn, "mail")
        token = start(conn, job_id)
        guard.transition(
            conn,
            job_id,
            [Step(JobStatus.FAILED), Step(JobStatus.SCHEDULED, "retry")],
            lease_token=token,
            error=ERROR,
        )
        token = start(conn, job_id)
        complete(conn, job_id, token)
    first = scrape(engine)
    key = "jobengine_job_run_seconds_count"
    assert first[(key, (("outcome", "failed"), ("queue", "mail")))] == 1
    assert first[(key, (("outcome", "completed"), ("queue", "mail")))] == 1
    assert first[("jobengine_job_wait_seconds_count", (("queue", "mail"),))] == 2
    histograms = {k: v for k, v in first.items() if k[0].startswith("jobengine_job_")}
    assert len(histograms) == 3 * (len(DURATION_BUCKETS) + 3)
    again = scrape(engine)
    assert {k: again[k] for k in histograms} == histograms


def test_a_scrape_reads_one_row_per_bucket_reached_not_one_per_job(engine: Engine) -> None:
    with transaction(engine) as conn:
        for _ in range(200):
            complete(conn, (job_id := job_in(conn, "bulk")), start(conn, job_id))
    scrape(engine)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT count(*) FROM duration_totals")).scalar_one()
    assert 2 <= rows <= 2 * (len(DURATION_BUCKETS) + 1)
