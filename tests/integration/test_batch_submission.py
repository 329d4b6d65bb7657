"""Batch submission: one statement for many jobs, each with its own correct history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.errors import PayloadNotSerializable
from jobengine.store.database import transaction
from jobengine.store.history_repository import JobHistoryRepository
from jobengine.submission import submit_many

S = JobStatus


def test_batch_keeps_order_and_gives_each_job_its_own_chain_and_events(engine: Engine) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    batch = [
        NewJob(type="noop", payload={"n": 1}),
        NewJob(type="noop", payload={"n": 2}, not_before=later),
        NewJob(type="noop", payload={"n": 3}, idempotency_key="k-3"),
        NewJob(type="noop", payload={"n": 4}, priority=7),
    ]
    with transaction(engine) as conn:
        stored = submit_many(conn, batch)
        repo = JobHistoryRepository(conn)
        chains = {job.id: repo.for_job(job.id) for job, _ in stored}
        events = {job.id: repo.events_for_job(job.id) for job, _ in stored}

    assert [job.payload["n"] for job, _ in stored] == [1, 2, 3, 4]
    assert [created for _, created in stored] == [True] * 4
    assert [job.status for job, _ in stored] == [S.SCHEDULED, S.PENDING, S.SCHEDULED, S.SCHEDULED]
    assert stored[3][0].priority == 7
    for job, _ in stored:
        chain = [(h.from_status, h.to_status) for h in chains[job.id]]
        assert chain == [(None, job.status)], "a job is born in its state, in one row"
        assert [e.event.history_id for e in events[job.id]] == [h.id for h in chains[job.id]]


def test_batch_with_one_bad_job_writes_nothing(engine: Engine) -> None:
    batch = [NewJob(type="noop"), NewJob(type="noop", payload={"bad": {1, 2}})]
    with pytest.raises(PayloadNotSerializable), transaction(engine) as conn:
        submit_many(conn, batch)
    with engine.connect() as conn:
        counts = [
            conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()
            for table in ("jobs", "job_history", "job_events")
        ]
    assert counts == [0, 0, 0]
