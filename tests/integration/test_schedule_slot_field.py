"""``NewJob.scheduled_for`` is stored by every submission path (one job, a batch, a keyed job
and a rate-limited one), so a backfill's batches carry their slots as a schedule's jobs do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from jobengine.domain.job import NewJob
from jobengine.limits import registry as limits
from jobengine.limits.definition import RateLimit, Scope
from jobengine.store.database import transaction
from jobengine.store.jobs_repository import JobsRepository
from jobengine.submission import submit, submit_many

SLOT = datetime(2026, 3, 29, 1, tzinfo=UTC)


def test_every_submission_path_stores_the_slot_a_job_was_created_for(engine: Engine) -> None:
    with transaction(engine) as conn:
        one, _ = submit(conn, NewJob(type="noop", scheduled_for=SLOT))
        keyed, _ = submit(conn, NewJob(type="noop", scheduled_for=SLOT, idempotency_key="k1"))
        batch = submit_many(
            conn, [NewJob(type="noop", scheduled_for=SLOT + timedelta(minutes=n)) for n in range(3)]
        )
        limits.set_limit(
            conn,
            RateLimit(name="slow", scope=Scope.TYPE, rate=1, per="hour", burst=1, job_type="sleep"),
        )
    with transaction(engine) as conn:
        limited, _ = submit(conn, NewJob(type="sleep", scheduled_for=SLOT))
        again, created = submit(conn, NewJob(type="noop", scheduled_for=SLOT, idempotency_key="k1"))
        stored = [JobsRepository(conn).get(job.id) for job in (one, keyed, limited)]
    assert [job.scheduled_for for job in stored] == [SLOT, SLOT, SLOT]
    assert [job.scheduled_for for job, _ in batch] == [
        SLOT + timedelta(minutes=n) for n in range(3)
    ]
    assert (again.id, created) == (keyed.id, False)
    assert one.scheduled_for == SLOT


def test_a_producers_job_has_no_slot(engine: Engine) -> None:
    with transaction(engine) as conn:
        job, _ = submit(conn, NewJob(type="noop"))
        assert JobsRepository(conn).get(job.id).scheduled_for is None
