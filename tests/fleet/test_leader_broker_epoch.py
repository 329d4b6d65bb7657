"""A broker that lost its data is noticed by the leader (its epoch key is gone), and every job
published but not claimed runs in seconds, not after ``redispatch_after_seconds``; a broker
that restarted with its data keeps the key, and nothing is published again."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import redis
from sqlalchemy import text

from jobengine.catalogue import announce
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.embedded import EmbeddedRedis
from jobengine.job_types import registry
from jobengine.maintenance.broker_epoch import EPOCH_KEY
from jobengine.producer import submit_jobs
from tests.fleet import handlers  # noqa: F401
from tests.fleet.conftest import Fleet, wait_until
from tests.fleet.leaders import REAPER_ENV

S = JobStatus
N = 40
NO_SWEEP = {**REAPER_ENV, "JOBENGINE_REDISPATCH_AFTER_SECONDS": "600"}


def _dispatch_marks(fleet: Fleet, ids: list[int]) -> dict[int, datetime | None]:
    with fleet.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, dispatched_at FROM jobs WHERE id = ANY(:ids)"), {"ids": ids}
        ).all()
    return {r[0]: r[1] for r in rows}


def _published_unclaimed(fleet: Fleet) -> list[int]:
    announce(fleet.engine, registry.specs(), "tests")  # no worker has announced them yet
    jobs = submit_jobs(fleet.engine, fleet.publisher(), [NewJob(type="effect") for _ in range(N)])
    ids = [j.id for j in jobs]
    assert all(mark is not None for mark in _dispatch_marks(fleet, ids).values())
    return ids


def _completed(fleet: Fleet, ids: list[int]) -> bool:
    return all(fleet.job(i).status is S.COMPLETED for i in ids)


def test_after_the_broker_loses_its_data_every_published_job_runs_within_seconds(
    fleet: Fleet,
) -> None:
    client = redis.Redis.from_url(fleet.broker_url)
    fleet.start_reaper("reaper-1", **NO_SWEEP)
    wait_until(lambda: client.get(EPOCH_KEY), 60, "the leader set the broker's epoch")
    ids = _published_unclaimed(fleet)

    client.flushall()  # the broker lost every message (and the epoch key beside them)
    lost_at = time.monotonic()
    fleet.start_worker("w1", concurrency=2)
    wait_until(lambda: _completed(fleet, ids), 120, "every job completed")

    assert time.monotonic() - lost_at < 60  # against a sweep after 600 s
    assert "broker_lost_its_data" in fleet.log_of("reaper-1")
    assert client.get(EPOCH_KEY) is not None
    assert sorted(e[0] for e in fleet.effects() if e[2] == "ran") == sorted(ids)


def test_a_broker_restart_that_kept_its_data_publishes_nothing_again(
    fleet: Fleet, tmp_path: Path
) -> None:
    broker = EmbeddedRedis(tmp_path / "own-redis")
    fleet.broker_url = broker.start()
    port = broker.port
    client = redis.Redis.from_url(fleet.broker_url)
    try:
        fleet.start_reaper("reaper-1", **NO_SWEEP)
        wait_until(lambda: client.get(EPOCH_KEY), 60, "the leader set the broker's epoch")
        ids = _published_unclaimed(fleet)
        marks = _dispatch_marks(fleet, ids)
        epochs_missing = fleet.log_of("reaper-1").count("broker_epoch_missing")

        client.shutdown(save=True)  # a restart that keeps its data: RDB saved and loaded
        broker.stop()
        broker = EmbeddedRedis(tmp_path / "own-redis", port=port)
        broker.start()
        wait_until(lambda: "broker_restarted" in fleet.log_of("reaper-1"), 60, "noticed")

        assert "broker_lost_its_data" not in fleet.log_of("reaper-1")
        assert fleet.log_of("reaper-1").count("broker_epoch_missing") == epochs_missing
        assert _dispatch_marks(fleet, ids) == marks  # nothing forgotten, nothing re-published
        fleet.start_worker("w1", concurrency=2)
        wait_until(lambda: _completed(fleet, ids), 120, "every job completed from kept messages")
    finally:
        fleet.stop_all()
        broker.stop()
