"""Transactional enqueue: the job lives and dies with the caller's transaction.

The fleet tests run real worker and reaper processes; the others need only Postgres.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import Engine, String, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.enqueue import ENQUEUE_ACTOR, dispatch_after_commit, enqueue, enqueue_many
from jobengine.errors import (
    DuplicateIdempotencyKey,
    PayloadTooLarge,
    UnknownJobType,
    ValidationError,
)
from tests.client.readme import example
from tests.fleet import handlers  # noqa: F401  (registers the test job types here too)
from tests.fleet.conftest import Fleet, wait_until

S = JobStatus
TENANT = dict(tenant_id="shop", project_id="orders")


class Base(DeclarativeBase):
    pass


class Order(Base):
    """A producer's own row, written in the same transaction as its job."""

    __tablename__ = "test_orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    item: Mapped[str] = mapped_column(String(50))


@pytest.fixture
def orders(engine: Engine) -> Engine:
    Base.metadata.create_all(engine)
    return engine


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in ("jobs", "job_history", "job_events", "test_orders")
        }


def test_enqueue_commits_with_the_callers_orm_and_core_writes(orders: Engine) -> None:
    with Session(orders) as session:
        session.add(Order(id=1, item="book"))
        session.flush()
        session.execute(text("INSERT INTO test_orders (id, item) VALUES (2, 'pen')"))
        job = enqueue(session, "noop", {"order": 1}, **TENANT)
        assert job.status is S.SCHEDULED and job.dispatched_at is None
        session.commit()

    assert counts(orders) == {"jobs": 1, "job_history": 1, "job_events": 1, "test_orders": 2}
    with orders.connect() as conn:
        actors = conn.execute(text("SELECT DISTINCT actor FROM job_history")).scalars().all()
    assert actors == [ENQUEUE_ACTOR]


def test_rollback_removes_the_job_with_the_callers_writes(orders: Engine) -> None:
    with Session(orders) as session:
        session.add(Order(id=1, item="book"))
        enqueue(session, "noop", **TENANT)
        enqueue_many(session, [NewJob(type="noop", **TENANT) for _ in range(3)])
        session.rollback()

    assert counts(orders) == {"jobs": 0, "job_history": 0, "job_events": 0, "test_orders": 0}


def test_a_connection_the_caller_has_not_begun_commits_on_its_commit(orders: Engine) -> None:
    with orders.connect() as conn:
        job = enqueue(conn, "noop", **TENANT)
        conn.commit()
    with orders.connect() as conn:
        row = conn.execute(text("SELECT status FROM jobs WHERE id = :i"), {"i": job.id}).one()
    assert row.status == "scheduled"


def test_an_autocommit_connection_is_refused(orders: Engine) -> None:
    with orders.connect() as conn:
        auto = conn.execution_options(isolation_level="AUTOCOMMIT")
        with pytest.raises(ValueError, match="autocommit"):
            enqueue(auto, "noop", **TENANT)
    assert counts(orders)["jobs"] == 0


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"type": "no_such_type"}, UnknownJobType),
        ({"priority": 42}, ValidationError),
        ({"not_before": datetime(2030, 1, 1)}, ValidationError),
        ({"payload": {"blob": "x" * 300_000}}, PayloadTooLarge),
        ({"project_id": ""}, ValidationError),
        ({"time_limit_seconds": -1.0}, ValidationError),
    ],
)
def test_validation_errors_raise_before_anything_is_written(
    orders: Engine, kwargs: dict[str, object], error: type[Exception]
) -> None:
    args: dict[str, object] = {"type": "noop", **TENANT, **kwargs}
    with Session(orders) as session:
        session.add(Order(id=1, item="book"))
        with pytest.raises(error):
            enqueue(session, **args)  # type: ignore[arg-type]
        session.commit()  # the caller's transaction is intact and its own rows commit

    assert counts(orders) == {"jobs": 0, "job_history": 0, "job_events": 0, "test_orders": 1}


def test_enqueue_many_validates_every_job_before_writing_any(orders: Engine) -> None:
    batch = [NewJob(type="noop", **TENANT), NewJob(type="noop", priority=10, **TENANT)]
    with Session(orders) as session:
        with pytest.raises(ValidationError):
            enqueue_many(session, batch)
        session.commit()
    assert counts(orders)["jobs"] == 0


def test_idempotency_key_returns_the_same_job_and_refuses_a_different_request(
    orders: Engine,
) -> None:
    with Session(orders) as session:
        first = enqueue(session, "noop", {"a": 1}, idempotency_key="k1", **TENANT)
        again = enqueue(session, "noop", {"a": 1}, idempotency_key="k1", **TENANT)
        assert again.id == first.id
        with pytest.raises(DuplicateIdempotencyKey):
            enqueue(session, "noop", {"a": 2}, idempotency_key="k1", **TENANT)
        session.commit()
    with Session(orders) as session:
        later = enqueue(session, "noop", {"a": 1}, idempotency_key="k1", **TENANT)
        session.commit()
    assert later.id == first.id
    assert counts(orders)["jobs"] == 1


def test_rolled_back_job_never_runs_and_committed_one_completes(fleet: Fleet) -> None:
    fleet.start_worker("w1")
    fleet.start_reaper("reaper-1")

    with Session(fleet.engine) as session:
        doomed = enqueue(session, "effect", **TENANT)
        session.rollback()
    with Session(fleet.engine) as session:
        kept = enqueue(session, "effect", **TENANT)
        assert kept.id > doomed.id  # the leader publishes in id order: doomed's turn came first
        session.commit()

    wait_until(lambda: fleet.job(kept.id).status is S.COMPLETED, 60, "committed job completed")
    assert [(h.from_status, h.to_status) for h in fleet.history(kept.id)] == [
        (None, S.SCHEDULED),
        (S.SCHEDULED, S.CLAIMED),
        (S.CLAIMED, S.RUNNING),
        (S.RUNNING, S.COMPLETED),
    ]
    assert fleet.history(doomed.id) == []
    assert [(e[0], e[2]) for e in fleet.effects()] == [(kept.id, "ran")]
    with fleet.engine.connect() as conn:
        rows = conn.execute(text("SELECT id FROM jobs")).scalars().all()
    assert rows == [kept.id]


def test_dispatch_after_commit_publishes_without_waiting_for_the_leader(fleet: Fleet) -> None:
    fleet.start_worker("w1")  # no reaper: only the session's own publish can start the job
    with Session(fleet.engine) as session:
        dispatch_after_commit(session, fleet.publisher())
        rolled_back = enqueue(session, "effect", **TENANT)
        session.rollback()
        job = enqueue(session, "effect", **TENANT)
        session.commit()

    wait_until(lambda: fleet.job(job.id).status is S.COMPLETED, 60, "completed")
    assert fleet.job(job.id).dispatched_at is not None
    assert fleet.history(rolled_back.id) == []
    assert [e[0] for e in fleet.effects()] == [job.id]


def test_readme_example_runs(orders: Engine) -> None:
    namespace: dict[str, object] = {"engine": orders, "Order": Order}
    exec(example("Transactional enqueue"), namespace)
    job = namespace["job"]
    assert counts(orders) == {"jobs": 1, "job_history": 1, "job_events": 1, "test_orders": 1}
    assert getattr(job, "tenant_id", None) == "shop"
