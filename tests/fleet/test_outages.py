"""Nothing is lost when Redis is away (the leader's own faults: ``test_leader_*.py``)."""

from __future__ import annotations

import time
from pathlib import Path

from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.embedded import EmbeddedRedis
from jobengine.producer import submit_jobs
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
