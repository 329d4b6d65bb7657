"""SIGTERM to a worker under load: what runs finishes within the bound, the rest is handed
back with its attempt returned, another worker finishes everything, nothing is lost or
finalized twice, and the stopped worker exits within the bound plus a few seconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter

import redis

from jobengine.domain.job import Job, NewJob
from jobengine.domain.status import FINAL_STATES, JobStatus
from jobengine.producer import submit_jobs
from jobengine.stopping import STOPPED_REASON
from tests.fleet.conftest import Fleet, wait_until
from workers.shutdown import STOP_WAIT_SECONDS

S = JobStatus
GRACE_SECONDS = 2.0
EXIT_MARGIN_SECONDS = 4.0
"""What a stopped worker may take past its bound: hand-backs, flushes, its goodbye."""
HANDLERS = json.dumps(["tests.fleet.handlers", "tests.fleet.shutdown_handlers"])
WORKER_ENV = {
    "JOBENGINE_HANDLER_MODULES": HANDLERS,
    "JOBENGINE_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS),
    # Long enough that no lease runs out under load: a hand-back, never the crash path.
    "JOBENGINE_LEASE_TTL_SECONDS": "20",
}


def start(
    fleet: Fleet, name: str, *, blocks: bool, concurrency: int = 3, **extra: str
) -> subprocess.Popen[bytes]:
    env = {**WORKER_ENV, "SHUTDOWN_TEST_BLOCKS": "1" if blocks else "0", **extra}
    return fleet.start_worker(name, concurrency=concurrency, **env)


def sigterm_and_time_exit(proc: subprocess.Popen[bytes], timeout: float) -> float:
    """SIGTERM to the main process only (as Kubernetes and ``docker stop`` send it)."""
    began = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout)
    return time.monotonic() - began


def submit(fleet: Fleet, jobs: list[NewJob], chunk_size: int = 1) -> list[Job]:
    return submit_jobs(fleet.engine, fleet.publisher(), jobs, chunk_size=chunk_size)


def effects_by(fleet: Fleet, what: str) -> dict[int, list[int]]:
    """job id → the pids that recorded ``what`` for it."""
    found: dict[int, list[int]] = {}
    for job_id, _attempt, did, pid in fleet.effects():
        if did == what:
            found.setdefault(job_id, []).append(pid)
    return found


def all_final(fleet: Fleet, jobs: list[Job]) -> bool:
    return all(fleet.job(j.id).status in FINAL_STATES for j in jobs)


def assert_each_completed_once_on_its_first_attempt(fleet: Fleet, jobs: list[Job]) -> None:
    """0 lost, 0 double-finalized, no attempt spent: one finalizing history row per job, a
    completion, counted as attempt 1 however often the job was handed back."""
    for j in jobs:
        history = fleet.history(j.id)
        finals = [h for h in history if h.to_status in FINAL_STATES]
        assert [(h.to_status, h.attempt) for h in finals] == [(S.COMPLETED, 1)], history
        assert fleet.job(j.id).attempt == 1
        assert not [h for h in history if h.to_status is S.FAILED], history


def handed_back(fleet: Fleet, job: Job) -> list[tuple[int, str]]:
    return [
        (h.attempt, h.actor)
        for h in fleet.history(job.id)
        if h.from_status is S.RUNNING and h.to_status is S.SCHEDULED and h.reason == STOPPED_REASON
    ]


def test_sigterm_completes_running_short_jobs_and_hands_back_long_ones_with_their_attempt(
    fleet: Fleet,
) -> None:
    w1 = start(fleet, "w1", blocks=True)
    longs = submit(fleet, [NewJob(type="long", priority=9) for _ in range(2)])
    shorts = submit(fleet, [NewJob(type="short", payload={"seconds": 1.0}) for _ in range(12)])
    wait_until(lambda: set(j.id for j in longs) <= set(effects_by(fleet, "started")), 60, "longs")
    [in_flight] = wait_until(
        lambda: list(
            set(effects_by(fleet, "started"))
            - set(effects_by(fleet, "finished"))
            - {j.id for j in longs}
        )[:1],
        60,
        "a short job running",
    )

    took = sigterm_and_time_exit(w1, GRACE_SECONDS + STOP_WAIT_SECONDS + 30)
    assert took < GRACE_SECONDS + EXIT_MARGIN_SECONDS, fleet.log_of("w1")
    assert "shutdown_bound_reached" in fleet.log_of("w1")
    started_by_w1 = {j for j, pids in effects_by(fleet, "started").items() if pids}
    finished = effects_by(fleet, "finished")
    short_ids = {j.id for j in shorts}
    for job_id in started_by_w1 & short_ids:  # every short job w1 began, w1 finished
        assert finished.get(job_id), f"short job {job_id} was cut off"
    assert fleet.job(in_flight).status is S.COMPLETED  # running at SIGTERM: completed as usual
    assert not handed_back(fleet, fleet.job(in_flight))
    for long_job in longs:
        assert fleet.job(long_job.id).status is S.SCHEDULED
        assert fleet.job(long_job.id).attempt == 0
        assert len(handed_back(fleet, long_job)) == 1
        assert effects_by(fleet, "stopped").get(long_job.id)

    start(fleet, "w2", blocks=False)
    everything = longs + shorts
    wait_until(lambda: all_final(fleet, everything), 90, "every job final")
    assert_each_completed_once_on_its_first_attempt(fleet, everything)
    stopped_in = {pid for pids in effects_by(fleet, "stopped").values() for pid in pids}
    for long_job in longs:  # finished by another worker's process
        assert set(effects_by(fleet, "finished")[long_job.id]).isdisjoint(stopped_in)


def test_a_handler_that_ignores_the_stop_is_killed_and_its_job_handed_back_by_the_main_process(
    fleet: Fleet,
) -> None:
    w1 = start(fleet, "w1", blocks=True, concurrency=1)
    [deaf] = submit(fleet, [NewJob(type="deaf")])
    wait_until(lambda: deaf.id in effects_by(fleet, "started"), 60, "deaf job started")

    took = sigterm_and_time_exit(w1, GRACE_SECONDS + STOP_WAIT_SECONDS + 30)
    assert took < GRACE_SECONDS + STOP_WAIT_SECONDS + EXIT_MARGIN_SECONDS, fleet.log_of("w1")
    assert effects_by(fleet, "ignored the stop").get(deaf.id)
    assert "shutdown_killing_pool_process" in fleet.log_of("w1")
    [(attempt, actor)] = handed_back(fleet, deaf)
    assert attempt == 0 and actor.endswith(":shutdown")

    start(fleet, "w2", blocks=False, concurrency=1)
    wait_until(lambda: all_final(fleet, [deaf]), 60, "deaf job final")
    assert_each_completed_once_on_its_first_attempt(fleet, [deaf])


def test_a_rolling_restart_of_two_workers_under_load_loses_nothing(fleet: Fleet) -> None:
    old = [start(fleet, "a1", blocks=True), start(fleet, "b1", blocks=True)]
    jobs = submit(fleet, [NewJob(type="long", priority=9) for _ in range(3)])
    jobs += submit(
        fleet, [NewJob(type="short", payload={"seconds": 0.05}) for _ in range(150)], chunk_size=5
    )
    wait_until(lambda: len(effects_by(fleet, "finished")) >= 10, 60, "the backlog drains")

    for old_worker, new_name in zip(old, ("a2", "b2"), strict=True):
        took = sigterm_and_time_exit(old_worker, GRACE_SECONDS + STOP_WAIT_SECONDS + 30)
        assert took < GRACE_SECONDS + EXIT_MARGIN_SECONDS
        start(fleet, new_name, blocks=False)

    wait_until(lambda: all_final(fleet, jobs), 120, "every job final")
    assert_each_completed_once_on_its_first_attempt(fleet, jobs)
    finishes = Counter(j for j, _a, what, _p in fleet.effects() if what == "finished")
    assert all(count == 1 for count in finishes.values()), finishes


def broker_messages(url: str) -> tuple[int, int]:
    """(messages waiting in queues, messages delivered but unacknowledged) in Redis."""
    client = redis.Redis.from_url(url)
    lists = [k for k in client.keys("*") if client.type(k) == b"list"]
    waiting = sum(client.llen(k) for k in lists if not k.startswith(b"_kombu"))
    return waiting, client.hlen("unacked")


def test_messages_prefetched_but_not_started_go_back_to_the_broker_unclaimed(
    fleet: Fleet,
) -> None:
    w1 = start(fleet, "w1", blocks=True, concurrency=1, JOBENGINE_WORKER_PREFETCH_MULTIPLIER="4")
    [long_job] = submit(fleet, [NewJob(type="long", priority=9)])
    wait_until(lambda: long_job.id in effects_by(fleet, "started"), 60, "long job started")
    shorts = submit(fleet, [NewJob(type="short", payload={"seconds": 0.05}) for _ in range(5)])
    wait_until(lambda: broker_messages(fleet.broker_url)[1] == 4, 60, "w1 prefetched 3 more")

    sigterm_and_time_exit(w1, GRACE_SECONDS + STOP_WAIT_SECONDS + 30)
    for short_job in shorts:  # never claimed: their only row is their birth
        assert [h.to_status for h in fleet.history(short_job.id)] == [S.SCHEDULED]
    # Back in their queues, none left unacknowledged; the long one published again.
    assert broker_messages(fleet.broker_url) == (len(shorts) + 1, 0)

    start(fleet, "w2", blocks=False)
    everything = [long_job, *shorts]
    wait_until(lambda: all_final(fleet, everything), 60, "every job final")
    assert_each_completed_once_on_its_first_attempt(fleet, everything)


def test_a_chunk_stopped_at_the_bound_hands_back_the_jobs_it_had_not_run(fleet: Fleet) -> None:
    w1 = start(fleet, "w1", blocks=True, concurrency=1)
    jobs = submit(fleet, [NewJob(type="long") for _ in range(6)], chunk_size=3)  # two chunks
    wait_until(lambda: effects_by(fleet, "started"), 60, "the first chunk's first job started")

    sigterm_and_time_exit(w1, GRACE_SECONDS + STOP_WAIT_SECONDS + 30)
    assert list(effects_by(fleet, "started")) == [jobs[0].id]  # the others never began
    for j in jobs[:3]:  # the chunk w1 held: every job handed back, its attempt returned
        assert fleet.job(j.id).status is S.SCHEDULED and fleet.job(j.id).attempt == 0
        assert len(handed_back(fleet, j)) == 1
    for j in jobs[3:]:  # the chunk still in the broker: never claimed
        assert [h.to_status for h in fleet.history(j.id)] == [S.SCHEDULED]

    start(fleet, "w2", blocks=False)
    wait_until(lambda: all_final(fleet, jobs), 60, "every job final")
    assert_each_completed_once_on_its_first_attempt(fleet, jobs)
