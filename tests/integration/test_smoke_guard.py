from sqlalchemy import Engine

from jobengine import guard
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.store.database import transaction
from jobengine.store.history_repository import JobHistoryRepository


def test_submitted_job_is_scheduled_with_a_one_row_history(engine: Engine) -> None:
    with transaction(engine) as conn:
        job = guard.create_job(conn, NewJob(type="noop"), schedule=True)
        assert job is not None
        history = JobHistoryRepository(conn).for_job(job.id)
    assert job.status is JobStatus.SCHEDULED
    assert [(h.from_status, h.to_status) for h in history] == [
        (None, JobStatus.SCHEDULED),
    ]
