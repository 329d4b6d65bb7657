"""Leadership as a lease row, and maintenance that errors per row, on a real Postgres.

The reapers here run in-process (``Reaper.tick``) so a test can hold two of them, move one's
clock, or give it a row that raises; the fleet tests run the same code as real processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from jobengine import guard
from jobengine.domain.dead_letter import DeadLetterReason
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.errors import ValidationError
from jobengine.execution import Executor
from jobengine.guard import Step
from jobengine.job_types import JobTypeRegistry, JobTypeSpec
from jobengine.maintenance import Leadership, LeadershipLost, Reaper
from jobengine.maintenance.leadership import ROLE
from jobengine.retry_policy import RetryPolicy
from jobengine.store.database import transaction
from jobengine.store.jobs_repository import DispatchRef, JobsRepository
from jobengine.store.leadership_repository import LeadershipRepository

S = JobStatus


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class RecordingBroker:
    def __init__(self) -> None:
        self.published: list[int] = []

    def publish(self, ref: DispatchRef, countdown: float | None = None) -> None:
        self.published.append(ref.id)

    def publish_chunk(self, refs: Sequence[DispatchRef]) -> None:
        self.published.extend(r.id for r in refs)


class CursedExecutor(Executor):
    """An executor whose policy lookup breaks for one job type, as a bug would, and whose
    catalogue holds a type default that no longer validates."""

    def policy_for(self, job_type: str, override: dict[str, Any] | None) -> RetryPolicy:
        if job_type == "cursed":
            raise RuntimeError("the policy store is haunted")
        if job_type == "misdeclared":
            raise ValidationError("unknown retry policy field(s): retry_on_tuesdays")
        return super().policy_for(job_type, override)


def registry() -> JobTypeRegistry:
    reg = JobTypeRegistry()
    reg.register(JobTypeSpec("work", retry_policy={"max_retries": 3, "base_delay_seconds": 0}))
    reg.register(JobTypeSpec("cursed"))
    return reg


def leader(conn_engine: Engine) -> tuple[str, int, bool] | None:
    with transaction(conn_engine) as conn:
        row = LeadershipRepository(conn).current(ROLE)
    return None if row is None else (row.holder, row.term, row.live)


def orphan(engine: Engine, job_type: str = "work", retry_policy: Any = None) -> int:
    """A job left running by a worker that vanished; its lease has already run out."""
    with transaction(engine) as conn:
        job = guard.create_job(conn, NewJob(type=job_type), schedule=True)
        assert job is not None
        guard.transition(
            conn,
            job.id,
            [Step(S.CLAIMED), Step(S.RUNNING)],
            lease_owner="vanished-worker",
            lease_ttl_seconds=0.001,
        )
        if retry_policy is not None:
            conn.execute(
                text("UPDATE jobs SET retry_policy = CAST(:p AS jsonb) WHERE id = :id"),
                {"p": retry_policy, "id": job.id},
            )
        conn.execute(
            text("UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = :id"),
            {"id": job.id},
        )
        return job.id


def reaper(engine: Engine, name: str, broker: RecordingBroker | None = None, **kw: Any) -> Reaper:
    executor_cls = kw.pop("executor_cls", Executor)
    return Reaper(
        engine,
        broker or RecordingBroker(),
        executor_cls(engine, lease_ttl_seconds=30, types=registry()),
        name=name,
        redispatch_after_seconds=600,
        dispatch_grace_seconds=0,
        leader_ttl_seconds=kw.pop("leader_ttl_seconds", 15.0),
    )


def status(engine: Engine, job_id: int) -> JobStatus:
    with transaction(engine) as conn:
        return JobsRepository(conn).get(job_id).status


def test_the_first_reaper_leads_and_a_second_is_refused_while_the_lease_is_live(
    engine: Engine,
) -> None:
    a = Leadership(engine, "reaper-a", 15)
    b = Leadership(engine, "reaper-b", 15)
    assert a.acquire() and a.leading()
    assert not b.acquire() and not b.leading()
    assert a.acquire()  # renewing keeps the term
    assert leader(engine) == ("reaper-a", a.term, True)


def test_an_expired_lease_goes_to_the_next_reaper_with_the_next_term(engine: Engine) -> None:
    a = Leadership(engine, "reaper-a", 15)
    assert a.acquire()
    first = a.term
    with engine.begin() as conn:
        conn.execute(text("UPDATE leadership SET expires_at = now() - interval '1 second'"))
    b = Leadership(engine, "reaper-b", 15)
    assert b.acquire()
    assert b.term == (first or 0) + 1
    assert leader(engine) == ("reaper-b", b.term, True)


def test_a_leader_past_its_own_deadline_stops_before_it_asks_the_database(
    engine: Engine,
) -> None:
    clock = Clock()
    a = Leadership(engine, "reaper-a", 15, clock=clock)
    assert a.acquire()
    clock.now += 16  # frozen past its TTL, as a SIGSTOPped process would be
    engine.dispose()
    with pytest.raises(LeadershipLost):
        a.ensure()
    assert not a.leading() and a.term is None


def test_a_replaced_leader_cannot_write_through_its_fence(engine: Engine) -> None:
    a = Leadership(engine, "reaper-a", 15)
    assert a.acquire()
    with engine.begin() as conn:
        conn.execute(text("UPDATE leadership SET expires_at = now() - interval '1 second'"))
    assert Leadership(engine, "reaper-b", 15).acquire()
    with pytest.raises(LeadershipLost), transaction(engine) as conn:
        a.fence(conn)  # a still believes it leads: its own clock has not run out
    assert not a.leading()


def test_a_released_lease_is_taken_by_the_next_reaper_at_once(engine: Engine) -> None:
    a = Leadership(engine, "reaper-a", 15)
    assert a.acquire()
    a.release()
    b = Leadership(engine, "reaper-b", 15)
    assert b.acquire()


def test_a_follower_does_no_maintenance(engine: Engine) -> None:
    job = orphan(engine)
    assert Leadership(engine, "reaper-a", 15).acquire()
    report = reaper(engine, "reaper-b").tick()
    assert not report.leader and report.rescued == []
    assert status(engine, job) is S.RUNNING


def test_a_job_whose_retry_policy_no_longer_validates_is_dead_lettered_and_the_rest_rescued(
    engine: Engine,
) -> None:
    healthy = [orphan(engine) for _ in range(20)]
    bad = orphan(engine, retry_policy='{"max_retries": 2, "retry_every_full_moon": true}')
    with transaction(engine) as conn:
        due = guard.create_job(
            conn,
            NewJob(type="work", not_before=datetime.now(UTC) - timedelta(seconds=1)),
            schedule=False,
        )
        fresh = guard.create_job(conn, NewJob(type="work"), schedule=True)
    assert due is not None and fresh is not None
    broker = RecordingBroker()

    report = reaper(engine, "reaper-1", broker).tick()

    assert report.leader
    assert sorted(report.rescued) == sorted([*healthy, bad])
    assert all(status(engine, j) is S.SCHEDULED for j in healthy)  # retried by their policy
    assert status(engine, bad) is S.FAILED
    with transaction(engine) as conn:
        letter = conn.execute(
            text("SELECT reason, error_code, error_message FROM dead_letters WHERE job_id = :j"),
            {"j": bad},
        ).one()
    assert letter.reason == DeadLetterReason.POISON.value
    assert letter.error_code == "RETRY_POLICY_INVALID"
    assert "retry policy does not validate" in letter.error_message
    assert "retry_every_full_moon" in letter.error_message
    assert report.promoted == [due.id]
    assert {fresh.id, due.id, *healthy} <= set(broker.published)


def test_a_row_that_raises_is_set_aside_and_counted_while_the_others_are_rescued(
    engine: Engine,
) -> None:
    healthy = [orphan(engine) for _ in range(5)]
    cursed = orphan(engine, job_type="cursed")
    worker = reaper(engine, "reaper-1", executor_cls=CursedExecutor)

    first = worker.tick()

    assert sorted(first.rescued) == sorted(healthy)
    assert first.set_aside == [cursed]
    assert status(engine, cursed) is S.RUNNING
    assert worker.set_aside.skipped_total["rescuer"] == 1
    second = worker.tick()  # set aside for a while: not retried (nor logged) every tick
    assert second.set_aside == [] and second.rescued == []
    assert worker.set_aside.skipped_total["rescuer"] == 1


def test_a_type_default_that_no_longer_validates_rescues_its_jobs_by_the_built_in_policy(
    engine: Engine,
) -> None:
    job = orphan(engine, job_type="misdeclared", retry_policy='{"max_retries": 5}')
    report = reaper(engine, "reaper-1", executor_cls=CursedExecutor).tick()
    assert report.rescued == [job] and report.set_aside == []
    assert status(engine, job) is S.SCHEDULED  # its own override (5 retries) still holds


def test_two_reapers_given_the_same_name_are_never_both_leaders(engine: Engine) -> None:
    first, second = reaper(engine, "reaper-1"), reaper(engine, "reaper-1")
    assert first.tick().leader
    assert not second.tick().leader
    assert first.tick().leader
