"""A worker process's leases and connections: the heartbeat outlives a terminated backend, a
lost lease is reported once, and a process holds one connection to Postgres under load."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime

from sqlalchemy import Engine, text

from jobengine import guard
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.guard import Step
from jobengine.lease import LeaseKeeper
from jobengine.producer import submit_jobs
from jobengine.store.database import SharedConnection, run_all, transaction, unpooled_engine
from tests.fleet.conftest import Fleet, wait_until

S = JobStatus
OWNER = "test-keeper"


def _running_job(engine: Engine, ttl: float = 30.0) -> tuple[int, int]:
    with transaction(engine) as conn:
        job = guard.create_job(conn, NewJob(type="effect"), schedule=True)
        assert job is not None
        moved = guard.transition(
            conn,
            job.id,
            [Step(S.CLAIMED), Step(S.RUNNING)],
            lease_owner=OWNER,
            lease_ttl_seconds=ttl,
        ).job
    return moved.id, moved.lease_token


def _lease_expiry(engine: Engine, job_id: int) -> datetime:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT lease_expires_at FROM jobs WHERE id = :j"), {"j": job_id}
        ).scalar_one()


def _keeper(db_url: str, interval: float = 0.1) -> tuple[SharedConnection, LeaseKeeper]:
    shared = SharedConnection(unpooled_engine(db_url, application_name="test-keeper"))
    return shared, LeaseKeeper(shared, ttl_seconds=30, interval_seconds=interval)


def test_the_heartbeat_survives_a_terminated_backend_and_goes_on_extending(
    db_url: str, engine: Engine
) -> None:
    shared, keeper = _keeper(db_url)
    job_id, token = _running_job(engine, ttl=1)
    keeper.hold(job_id, token)
    try:
        with shared.use() as conn:
            backend = run_all(conn, "SELECT pg_backend_pid() AS pid", {})[0]["pid"]
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": backend})
        # Any beat from here on meets the dead connection first: an extension past this one
        # was made on a new connection by the same thread.
        at_kill = _lease_expiry(engine, job_id)
        wait_until(lambda: _lease_expiry(engine, job_id) > at_kill, 10, "a beat after it")
        assert keeper.still_held(job_id)
        with shared.use() as conn:
            assert run_all(conn, "SELECT pg_backend_pid() AS pid", {})[0]["pid"] != backend
    finally:
        keeper.stop()
        keeper.release(job_id)


def test_a_lost_lease_is_reported_once_and_no_longer_extended(db_url: str, engine: Engine) -> None:
    _, keeper = _keeper(db_url, interval=60)  # beats are driven by hand here
    job_id, token = _running_job(engine)
    keeper.hold(job_id, token)
    keeper.stop()
    assert keeper.beat() == set()
    with transaction(engine) as conn:
        guard.transition(conn, job_id, S.CANCELLED, reason="cancelled by test")

    assert keeper.beat() == {job_id}
    assert not keeper.still_held(job_id)
    assert keeper.beat() == set()  # known lost: neither reported again nor extended
    keeper.release(job_id)
    assert keeper.held() == {}


def test_each_worker_process_holds_one_connection_under_load(fleet: Fleet) -> None:
    main = fleet.start_worker("w1", concurrency=2)
    per_process: Counter[str] = Counter()
    most: Counter[str] = Counter()
    stop = threading.Event()

    def sample() -> None:
        with fleet.engine.connect() as conn:
            while not stop.is_set():
                rows = conn.execute(
                    text(
                        "SELECT application_name, count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() "
                        "AND application_name LIKE 'jobengine-worker:%' GROUP BY 1"
                    )
                ).all()
                conn.rollback()  # a fresh view of pg_stat_activity each time
                for row in rows:
                    name, count = str(row[0]), int(row[1])
                    per_process[name] += 1
                    most[name] = max(most[name], count)
                stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        jobs = submit_jobs(
            fleet.engine,
            fleet.publisher(),
            [NewJob(type="noop", payload={"n": n}) for n in range(300)],
            chunk_size=1000,  # one message per job: the most claims and outcomes per second
        )
        ids = [j.id for j in jobs]
        wait_until(
            lambda: all(fleet.job(i).status is S.COMPLETED for i in ids[-20:]),
            120,
            "the backlog drained",
        )
    finally:
        stop.set()
        sampler.join(10)
    assert all(fleet.job(i).status is S.COMPLETED for i in ids)
    assert len(most) == 2, most  # the two pool processes, each seen under load
    assert set(most.values()) == {1}, most
    assert f"jobengine-worker:{main.pid}" not in most  # the main process opened none
    assert min(per_process.values()) > 3
