"""The README's run example, executed as written, and a run enqueued in a transaction that
rolls back leaving nothing."""

from __future__ import annotations

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from jobengine.domain.job import Job
from jobengine.domain.run import Run
from jobengine.domain.status import JobStatus, RunStatus
from jobengine.enqueue import enqueue_run
from tests.client.readme import example
from tests.integration.test_runs_promotion import DIAMOND, row_counts, spec_of


def test_the_readme_run_example_stores_a_run_with_its_root_scheduled(engine: Engine) -> None:
    namespace: dict[str, object] = {"engine": engine, "Session": Session}
    exec(example("Runs"), namespace)
    run, jobs = namespace["run"], namespace["jobs"]
    assert isinstance(run, Run) and run.status is RunStatus.RUNNING and run.jobs_total == 3
    assert isinstance(jobs, list) and all(isinstance(j, Job) for j in jobs)
    assert [(j.run_key, j.status) for j in jobs] == [
        ("extract", JobStatus.SCHEDULED),
        ("clean", JobStatus.PENDING),
        ("report", JobStatus.PENDING),
    ]
    with engine.connect() as conn:
        assert row_counts(conn)[:3] == (1, 3, 2)


def test_a_run_enqueued_in_a_transaction_that_rolls_back_leaves_no_row(engine: Engine) -> None:
    with Session(engine) as session:
        run, _ = enqueue_run(session, spec_of(DIAMOND))
        assert run.id > 0
        session.rollback()
    with engine.connect() as conn:
        assert row_counts(conn) == (0, 0, 0, 0, 0)
        assert conn.execute(text("SELECT count(*) FROM runs")).scalar_one() == 0
