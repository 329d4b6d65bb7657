"""Submitting jobs: refusals leave no trace, an unreachable store is retryable, and an
Idempotency-Key makes a retried submission return the original job."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text

from jobengine.domain.job import Job, NewJob
from jobengine.domain.status import JobStatus
from jobengine.embedded import free_loopback_port
from jobengine.errors import (
    DuplicateIdempotencyKey,
    JobEngineError,
    PayloadNotSerializable,
    PayloadTooLarge,
    StoreUnavailable,
    UnknownJobType,
    UnknownState,
    ValidationError,
)
from jobengine.job_types import BUILTINS
from jobengine.store.database import make_engine, transaction
from jobengine.store.history_repository import JobHistoryRepository
from jobengine.submission import submit

SUBMITTERS = 20


def row_counts(conn: Connection) -> tuple[int, int, int]:
    """Rows in jobs, job_history and job_events."""
    jobs, history, events = (
        int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
        for table in ("jobs", "job_history", "job_events")
    )
    return jobs, history, events


def refused_submission(engine: Engine, new: NewJob, **kwargs: Any) -> JobEngineError:
    """Submit ``new`` expecting a refusal; check that nothing at all was written."""
    with transaction(engine) as conn:
        before = row_counts(conn)
        with pytest.raises(JobEngineError) as refused:
            submit(conn, new, **kwargs)
        # Within the same transaction, so "nothing written" is not just "rolled back".
        assert row_counts(conn) == before
    with transaction(engine) as conn:
        assert row_counts(conn) == before == (0, 0, 0)
    return refused.value


# ---- refusals -----------------------------------------------------------------------------


def test_unknown_job_type_is_refused_with_the_known_types_in_the_hint(engine: Engine) -> None:
    err = refused_submission(engine, NewJob(type="no_such_type"))
    assert isinstance(err, UnknownJobType)
    assert err.code == "UNKNOWN_JOB_TYPE"
    assert "no_such_type" in err.message
    for builtin in BUILTINS:
        assert builtin.name in err.hint
    assert not err.retryable


def test_misspelt_state_name_is_refused_with_the_valid_states_in_the_hint() -> None:
    with pytest.raises(UnknownState) as refused:
        JobStatus.parse("runing")
    assert "runing" in refused.value.message
    for state in JobStatus:
        assert state.value in refused.value.hint
    assert isinstance(refused.value, ValidationError)
    assert JobStatus.parse(" Running ") is JobStatus.RUNNING


@pytest.mark.parametrize(
    "payload",
    [{"tags": {"a", "b"}}, {"score": math.nan}, {"score": math.inf}, {"when": datetime.now(UTC)}],
    ids=["set", "nan", "infinity", "datetime"],
)
def test_payload_that_is_not_json_is_refused(engine: Engine, payload: dict[str, Any]) -> None:
    err = refused_submission(engine, NewJob(type="noop", payload=payload))
    assert isinstance(err, PayloadNotSerializable)
    assert err.code == "PAYLOAD_NOT_SERIALIZABLE"
    assert err.hint


def test_payload_over_the_size_limit_is_refused_and_one_at_the_limit_is_accepted(
    engine: Engine,
) -> None:
    limit = 64
    at_limit = {"s": "x" * (limit - len('{"s":""}'))}
    err = refused_submission(
        engine, NewJob(type="noop", payload={"s": at_limit["s"] + "x"}), max_payload_bytes=limit
    )
    assert isinstance(err, PayloadTooLarge)
    assert str(limit) in err.message
    with transaction(engine) as conn:
        job, created = submit(conn, NewJob(type="noop", payload=at_limit), max_payload_bytes=limit)
    assert created and job.payload == at_limit


@pytest.mark.parametrize("priority", [10, -1])
def test_priority_out_of_range_is_refused(engine: Engine, priority: int) -> None:
    err = refused_submission(engine, NewJob(type="noop", priority=priority))
    assert type(err) is ValidationError
    assert str(priority) in err.message
    assert "0" in err.hint and "9" in err.hint


def test_naive_not_before_is_refused(engine: Engine) -> None:
    err = refused_submission(
        engine, NewJob(type="noop", not_before=datetime.now() + timedelta(hours=1))
    )
    assert type(err) is ValidationError
    assert "timezone" in err.message


# ---- an unreachable store -----------------------------------------------------------------


def test_unreachable_database_raises_retryable_store_unavailable() -> None:
    port = free_loopback_port()  # bound and released: nothing listens there now
    dead = make_engine(f"postgresql://nobody@127.0.0.1:{port}/jobengine")
    try:
        with pytest.raises(StoreUnavailable) as down, transaction(dead) as conn:
            submit(conn, NewJob(type="noop"))
    finally:
        dead.dispose()
    err = down.value
    assert err.retryable is True
    assert err.code == "STORE_UNAVAILABLE"
    assert "JOBENGINE_DATABASE_URL" in err.hint
    assert err.__cause__ is not None, "the driver's error is kept as the cause"


# ---- idempotency --------------------------------------------------------------------------


def keyed(key: str = "order-17", **overrides: Any) -> NewJob:
    fields: dict[str, Any] = {"type": "noop", "payload": {"order": 17}, "idempotency_key": key}
    fields.update(overrides)
    return NewJob(**fields)


def test_same_key_and_request_returns_the_original_job_without_a_new_one(engine: Engine) -> None:
    with transaction(engine) as conn:
        first, created_first = submit(conn, keyed())
    with transaction(engine) as conn:
        again, created_again = submit(conn, keyed())
        counts = row_counts(conn)
    assert created_first is True
    assert created_again is False
    assert again == first
    assert counts == (1, 1, 1)


def test_same_key_in_another_tenant_is_a_different_job(engine: Engine) -> None:
    with transaction(engine) as conn:
        a, _ = submit(conn, keyed(tenant_id="tenant-a"))
        b, created = submit(conn, keyed(tenant_id="tenant-b"))
    assert created and a.id != b.id


@pytest.mark.parametrize(
    "changed",
    [
        {"payload": {"order": 18}},
        {"priority": 5},
        {"type": "sleep", "payload": {}},
        {"queue": "gpu"},
    ],
    ids=["payload", "priority", "type", "queue"],
)
def test_same_key_with_a_different_request_is_a_conflict(
    engine: Engine, changed: dict[str, Any]
) -> None:
    with transaction(engine) as conn:
        original, _ = submit(conn, keyed())
    with transaction(engine) as conn:
        before = row_counts(conn)
        with pytest.raises(DuplicateIdempotencyKey) as conflict:
            submit(conn, keyed(**changed))
        assert row_counts(conn) == before
    assert "order-17" in conflict.value.message
    assert conflict.value.code == "DUPLICATE_IDEMPOTENCY_KEY"
    with transaction(engine) as conn:
        assert JobHistoryRepository(conn).for_job(original.id)[-1].to_status is (
            JobStatus.SCHEDULED
        )


@pytest.fixture
def submit_engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url, pool_size=SUBMITTERS, max_overflow=0)
    yield eng
    eng.dispose()


def test_concurrent_submissions_with_one_key_create_exactly_one_job(submit_engine: Engine) -> None:
    barrier = threading.Barrier(SUBMITTERS)

    def submit_once(_: int) -> tuple[Job, bool]:
        with submit_engine.connect() as conn:
            barrier.wait(30)
            with conn.begin():
                return submit(conn, keyed("race-key", payload={"same": True}))

    with ThreadPoolExecutor(max_workers=SUBMITTERS) as pool:
        results = list(pool.map(submit_once, range(SUBMITTERS)))

    assert sum(created for _, created in results) == 1
    assert len({job.id for job, _ in results}) == 1
    with transaction(submit_engine) as conn:
        assert row_counts(conn) == (1, 1, 1)


# ---- scheduling at submission ---------------------------------------------------------------


def test_job_with_future_not_before_stays_pending_with_one_history_row(engine: Engine) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    with transaction(engine) as conn:
        job, created = submit(conn, NewJob(type="noop", not_before=later))
    with transaction(engine) as conn:
        history = JobHistoryRepository(conn).for_job(job.id)
        events = JobHistoryRepository(conn).events_for_job(job.id)
    assert created
    assert job.status is JobStatus.PENDING
    assert job.not_before == later
    assert job.scheduled_at is None
    assert [(h.from_status, h.to_status, h.actor) for h in history] == [
        (None, JobStatus.PENDING, "producer")
    ]
    assert [e.event.history_id for e in events] == [history[0].id]


def test_job_without_not_before_is_scheduled_at_once(engine: Engine) -> None:
    with transaction(engine) as conn:
        job, created = submit(conn, NewJob(type="noop"))
        history = JobHistoryRepository(conn).for_job(job.id)
    assert created
    assert job.status is JobStatus.SCHEDULED
    assert job.scheduled_at is not None
    assert [h.to_status for h in history] == [JobStatus.SCHEDULED]


def test_a_payload_that_does_not_fit_the_types_model_is_refused_naming_the_field(
    engine: Engine,
) -> None:
    from pydantic import BaseModel

    from jobengine.errors import PayloadInvalid
    from jobengine.job_types import JobTypeRegistry, JobTypeSpec

    class Resize(BaseModel):
        width: int

    types = JobTypeRegistry()
    types.register(JobTypeSpec("resize", payload_model=Resize))
    with transaction(engine) as conn:
        with pytest.raises(PayloadInvalid, match="does not fit its schema: width"):
            submit(conn, NewJob(type="resize", payload={"width": "wide"}), types=types)
        job, created = submit(conn, NewJob(type="resize", payload={"width": 640}), types=types)
    assert created and job.payload == {"width": 640}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM jobs")).scalar_one() == 1
