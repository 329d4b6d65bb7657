"""Many completions in one fenced statement, and a chunk claimed and started in one.

Counted, not timed: statements are counted on the wire (``bench.wire_count``), and each job's
history and outbox rows are read back, so a batch that skipped one would show.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, make_url, text

from bench.wire_count import CountingRelay, WireCount
from jobengine import guard
from jobengine.attempt import Attempts, Delivery
from jobengine.completer import Completer
from jobengine.dispatch import chunk_task_id
from jobengine.domain.job import Job, NewJob
from jobengine.domain.status import JobStatus
from jobengine.execution import Claim, Executor
from jobengine.lease import LeaseKeeper
from jobengine.producer import dispatch_ref
from jobengine.store.database import SharedConnection, transaction, unpooled_engine
from tests.fleet.conftest import wait_until
from tests.integration.test_leadership import RecordingBroker

S = JobStatus
OWNER = "worker-1"


@pytest.fixture
def relay(db_url: str) -> Iterator[CountingRelay]:
    url = make_url(db_url)
    counting = CountingRelay(url.host or "127.0.0.1", url.port or 5432)
    yield counting
    counting.close()


@pytest.fixture
def worker_engine(db_url: str, relay: CountingRelay) -> Iterator[Engine]:
    """The worker's engine, its every message counted on the wire by ``relay``."""
    url = make_url(db_url).set(port=relay.port)
    engine = unpooled_engine(url.render_as_string(hide_password=False), application_name="t")
    yield engine
    engine.dispose()


@pytest.fixture
def executor(engine: Engine, worker_engine: Engine) -> Executor:
    """A worker's executor whose chunk claim and batched completion have run once already, so
    what the tests count is their steady state: each statement prepared on the connection
    (its first run on a connection takes one more round trip, to prepare it)."""
    executor = Executor(
        worker_engine, lease_ttl_seconds=30, connection=SharedConnection(worker_engine)
    )
    warm = executor.claim_chunk([j.id for j in scheduled_jobs(engine, 2)], "warm-up")
    executor.complete_many([(claim, None) for claim in warm])
    return executor


def scheduled_jobs(engine: Engine, n: int) -> list[Job]:
    with transaction(engine) as conn:
        return guard.create_jobs(conn, [NewJob(type="noop", payload={"n": i}) for i in range(n)])


def moves(engine: Engine, job_id: int) -> list[tuple[str | None, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT from_status, to_status FROM job_history WHERE job_id = :i ORDER BY id"),
            {"i": job_id},
        )
        return [(r[0], r[1]) for r in rows]


def events_of(engine: Engine, job_id: int) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT data->>'to_status' FROM job_events WHERE job_id = :i ORDER BY id"),
            {"i": job_id},
        )
        return [r[0] for r in rows]


def test_a_chunk_is_claimed_and_started_in_one_statement(
    engine: Engine, relay: CountingRelay, executor: Executor
) -> None:
    jobs = scheduled_jobs(engine, 5)
    before = relay.count()
    claims = executor.claim_chunk([j.id for j in jobs], OWNER)
    assert relay.count() - before == WireCount(statements=1, round_trips=1)
    assert [c.job.status for c in claims] == [S.RUNNING] * 5
    assert [c.attempt for c in claims] == [1] * 5
    for job in jobs:
        assert moves(engine, job.id)[-2:] == [("scheduled", "claimed"), ("claimed", "running")]
        assert events_of(engine, job.id)[-2:] == ["claimed", "running"]


def test_many_completions_are_one_statement_each_job_with_its_own_result_and_history(
    engine: Engine, relay: CountingRelay, executor: Executor
) -> None:
    jobs = scheduled_jobs(engine, 20)
    claims = executor.claim_chunk([j.id for j in jobs], OWNER)
    before = relay.count()
    written = executor.complete_many([(c, {"n": c.job.payload["n"]}) for c in claims])
    assert relay.count() - before == WireCount(statements=1, round_trips=1)
    assert sorted(written) == [j.id for j in jobs]
    for job in jobs:
        done = written[job.id]
        assert done is not None and done.status is S.COMPLETED
        assert done.result == {"n": job.payload["n"]}
        assert moves(engine, job.id)[-1] == ("running", "completed")
        assert events_of(engine, job.id)[-1] == "completed"


def test_a_batched_completion_with_a_stale_token_is_refused_and_the_rest_complete(
    engine: Engine, executor: Executor
) -> None:
    jobs = scheduled_jobs(engine, 3)
    claims = executor.claim_chunk([j.id for j in jobs], OWNER)
    stale = claims[1]
    with transaction(engine) as conn:  # taken over: a rescue and a new claim bump the token
        conn.execute(
            text("UPDATE jobs SET lease_token = lease_token + 1 WHERE id = :i"),
            {"i": stale.job_id},
        )
    written = executor.complete_many([(c, None) for c in claims])
    assert written[stale.job_id] is None
    with engine.connect() as conn:
        states = dict(
            conn.execute(
                text("SELECT id, status::text FROM jobs WHERE id = ANY(:ids)"),
                {"ids": [c.job_id for c in claims]},
            ).all()
        )
    assert states == {
        claims[0].job_id: "completed",
        stale.job_id: "running",
        claims[2].job_id: "completed",
    }
    assert moves(engine, stale.job_id)[-1] == ("claimed", "running")


def test_a_full_buffer_is_written_at_once_in_one_statement(
    engine: Engine, relay: CountingRelay, executor: Executor
) -> None:
    completer = Completer(executor, flush_after_seconds=60, max_batch=4)
    claims = executor.claim_chunk([j.id for j in scheduled_jobs(engine, 4)], OWNER)
    before = relay.count()
    for claim in claims[:3]:
        completer.add(claim, {"ok": True})
    assert relay.count() == before and completer.pending() == 3
    completer.add(claims[3], {"ok": True})
    assert relay.count() - before == WireCount(statements=1, round_trips=1)
    assert completer.pending() == 0
    assert all(_status(engine, c) is S.COMPLETED for c in claims)


def test_a_buffered_completion_is_written_once_its_wait_runs_out(
    engine: Engine, executor: Executor
) -> None:
    completer = Completer(executor, flush_after_seconds=0.05, max_batch=100)
    [claim] = executor.claim_chunk([j.id for j in scheduled_jobs(engine, 1)], OWNER)
    completer.add(claim, {"ok": True})
    wait_until(lambda: _status(engine, claim) is S.COMPLETED, 10, "the buffered completion")
    assert completer.pending() == 0


def _status(engine: Engine, claim: Claim) -> JobStatus:
    with engine.connect() as conn:
        value = conn.execute(
            text("SELECT status::text FROM jobs WHERE id = :i"), {"i": claim.job_id}
        ).scalar_one()
    return JobStatus(value)


def test_a_completer_refuses_settings_that_would_never_flush(executor: Executor) -> None:
    with pytest.raises(ValueError, match="flush_after_seconds"):
        Completer(executor, flush_after_seconds=0, max_batch=1)
    with pytest.raises(ValueError, match="max_batch"):
        Completer(executor, flush_after_seconds=1, max_batch=0)


def test_a_chunk_claimed_once_the_store_is_back_runs_every_job_after_a_failed_flush(
    engine: Engine, executor: Executor
) -> None:
    completer = Completer(executor, flush_after_seconds=60, max_batch=100)
    completer.store_unreachable = True  # as a flush that met the store away leaves it
    attempts = Attempts(
        executor,
        LeaseKeeper(executor.connection, 30, 10),
        OWNER,
        eta_limit_seconds=3600,
        completer=completer,
    )
    jobs = scheduled_jobs(engine, 3)
    refs = [dispatch_ref(j) for j in jobs]
    delivery = Delivery(task_id=chunk_task_id(refs), job_type="noop", args=[j.id for j in jobs])
    claims = attempts.claim(delivery)
    assert len(claims) == 3
    publisher = RecordingBroker()
    attempts.run_chunk(claims, lambda ctx: None, publisher)
    assert [_status(engine, c) for c in claims] == [S.COMPLETED] * 3
    assert publisher.published == [], "no job of the chunk was handed back"
