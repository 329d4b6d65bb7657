"""Nothing is lost when Redis is away, and maintenance has exactly one leader."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import text

from jobengine import guard
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.embedded import EmbeddedRedis
from jobengine.guard import Step
from jobengine.producer import submit_jobs
from jobengine.reaper import LEADER_LOCK_KEY
from jobengine.store.database import transaction
from tests.fleet import handlers  # noqa: F401
from tests.fleet.conftest import Fleet, wait_until

S = JobStatus


def test_job_submitted_while_redis_is_down_completes_after_redis_returns(
    fleet: Fleet, tmp_path: Path
) -> None:
    redis_dir = tmp_path / "own-redis"
    broker = EmbeddedRedis(redis_dir)
    fleet.broker_url = broker.start()
    port = broker.port
    try:
        fleet.start_worker("w1")
        fleet.start_reaper("reaper-1")
        broker.stop()

        started = time.monotonic()
        [job] = submit_jobs(fleet.engine, fleet.publisher(), [NewJob(type="effect")])
        submit_seconds = time.monotonic() - started
        stored = fleet.job(job.id)
        assert stored.status is S.SCHEDULED and stored.dispatched_at is None
        assert submit_seconds < 30  # the producer was answered, not left hanging

        broker = EmbeddedRedis(redis_dir, port=port)
        broker.start()
        wait_until(lambda: fleet.job(job.id).status is S.COMPLETED, 120, "completed")
        assert [e[1:3] for e in fleet.effects(job.id)] == [(1, "ran")]
    finally:
        broker.stop()


def _leader_pids(fleet: Fleet) -> list[int]:
    with fleet.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND ((classid::bigint << 32) | objid::bigint) = :k"
            ),
            {"k": LEADER_LOCK_KEY},
        ).all()
    return [r[0] for r in rows]


def _orphan_running_job(fleet: Fleet) -> int:
    """A job left running by a worker that vanished: its lease has already run out."""
    with transaction(fleet.engine) as conn:
        job = guard.create_job(conn, NewJob(type="effect"), schedule=True)
        assert job is not None
        guard.transition(
            conn,
            job.id,
            [Step(S.CLAIMED), Step(S.RUNNING)],
            lease_owner="vanished-worker",
            lease_ttl_seconds=0.001,
        )
        return job.id


def _rescuer(fleet: Fleet, job_id: int) -> str | None:
    rescued = [h for h in fleet.history(job_id) if h.reason == "lease_expired"]
    return rescued[0].actor if rescued else None


def test_two_reapers_one_leads_and_the_other_takes_over_when_it_dies(fleet: Fleet) -> None:
    reapers = {
        "reaper-a": fleet.start_reaper("reaper-a"),
        "reaper-b": fleet.start_reaper("reaper-b"),
    }
    wait_until(lambda: len(_leader_pids(fleet)) == 1, 60, "one leader")

    first = _orphan_running_job(fleet)
    leader = wait_until(lambda: _rescuer(fleet, first), 60, "first rescue")
    assert len(_leader_pids(fleet)) == 1
    assert [h.reason for h in fleet.history(first)].count("lease_expired") == 1

    fleet.kill(reapers[leader])
    follower = "reaper-b" if leader == "reaper-a" else "reaper-a"
    second = _orphan_running_job(fleet)
    assert wait_until(lambda: _rescuer(fleet, second), 60, "rescue after failover") == follower
    assert len(_leader_pids(fleet)) == 1
