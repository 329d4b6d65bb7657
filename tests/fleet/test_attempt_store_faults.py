"""The attempt pipeline when Postgres blinks under a worker: outcome writes are retried on a
fresh connection, a claim that cannot reach Postgres keeps its message, and an interrupted
chunk leaves no lease held by a process that no longer runs its jobs."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, create_engine, make_url, text

from jobengine import guard
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.producer import dispatch_ref, submit_jobs
from jobengine.store.database import normalize_url, transaction
from tests.fleet import attempt_handlers, handlers  # noqa: F401
from tests.fleet.conftest import Fleet, wait_until

S = JobStatus
HANDLER_MODULES = json.dumps(["tests.fleet.handlers", "tests.fleet.attempt_handlers"])
NO_SWEEP = "600"
"""Redispatch only after 10 minutes: the lost-dispatch sweep cannot be what saves a job."""


def _all(fleet: Fleet, ids: list[int], status: JobStatus) -> bool:
    return all(fleet.job(i).status is status for i in ids)


@pytest.fixture
def admin(pg_admin_url: str) -> Iterator[Connection]:
    """A connection opened before any test closes the door: it stays usable while the
    database refuses new ones."""
    engine = create_engine(normalize_url(pg_admin_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        yield conn
    engine.dispose()


def _set_allow_connections(admin: Connection, database: str, allow: bool) -> None:
    admin.execute(
        text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {"true" if allow else "false"}')
    )


def _terminate_workers(admin: Connection, database: str) -> int:
    return len(
        admin.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :d AND application_name LIKE 'jobengine-worker:%'"
            ),
            {"d": database},
        ).all()
    )


def test_an_outcome_write_that_meets_a_terminated_backend_is_retried_and_runs_the_job_once(
    fleet: Fleet,
) -> None:
    fleet.start_worker(
        "w1",
        concurrency=2,
        JOBENGINE_HANDLER_MODULES=HANDLER_MODULES,
        # A heartbeat due long after the handler returns: the outcome write, not a beat, is
        # the first statement to meet the dead connection.
        JOBENGINE_LEASE_TTL_SECONDS="30",
        JOBENGINE_HEARTBEAT_INTERVAL_SECONDS="10",
    )
    jobs = submit_jobs(
        fleet.engine,
        fleet.publisher(),
        [NewJob(type="cut_own_connection") for _ in range(4)],
        chunk_size=100,
    )
    ids = [j.id for j in jobs]
    wait_until(lambda: _all(fleet, ids, S.COMPLETED), 60, "every job completed")

    for job_id in ids:
        assert fleet.job(job_id).attempt == 1
        assert [e[1:3] for e in fleet.effects(job_id)] == [(1, "ran")]
        completions = [h for h in fleet.history(job_id) if h.to_status is S.COMPLETED]
        assert len(completions) == 1
    log = fleet.log_of("w1")
    assert log.count("store_call_retried") >= len(ids)
    assert "outcome:completed" in log
    assert "outcome_not_recorded" not in log and "outcome_refused" not in log


def test_a_storm_of_terminated_worker_backends_loses_no_job_and_runs_each_once(
    fleet: Fleet, admin: Connection
) -> None:
    database = make_url(fleet.db_url).database or ""
    fleet.start_worker("w1", concurrency=2, JOBENGINE_HANDLER_MODULES=HANDLER_MODULES)
    fleet.start_reaper("reaper-1")
    stop = threading.Event()
    terminated: list[int] = []

    def storm() -> None:
        while not stop.wait(0.15):
            terminated.append(_terminate_workers(admin, database))

    storming = threading.Thread(target=storm, daemon=True)
    storming.start()
    try:
        # One job per message, enough of them that the storm meets claims, outcomes and
        # heartbeats alike (a chunked backlog of 60 can drain before its first blow).
        jobs = submit_jobs(
            fleet.engine,
            fleet.publisher(),
            [NewJob(type="effect") for _ in range(200)],
            chunk_size=1,
        )
        ids = [j.id for j in jobs]
        wait_until(lambda: _all(fleet, ids, S.COMPLETED), 120, "every job completed")
    finally:
        stop.set()
        storming.join(10)
    assert sum(terminated) > 0
    runs = {job_id: len(fleet.effects(job_id)) for job_id in ids}
    assert set(runs.values()) == {1}, {i: n for i, n in runs.items() if n != 1}


def test_a_claim_while_postgres_refuses_connections_keeps_its_message_until_it_is_back(
    fleet: Fleet, admin: Connection
) -> None:
    database = make_url(fleet.db_url).database or ""
    fleet.start_worker(
        "w1", concurrency=2, JOBENGINE_REDISPATCH_AFTER_SECONDS=NO_SWEEP
    )  # no reaper at all: nothing but the message can bring the jobs to a worker
    warm = submit_jobs(fleet.engine, fleet.publisher(), [NewJob(type="effect")])[0]
    wait_until(lambda: fleet.job(warm.id).status is S.COMPLETED, 60, "warm-up job done")
    with transaction(fleet.engine) as conn:
        created = [guard.create_job(conn, NewJob(type="effect"), schedule=True) for _ in range(3)]
    single, *chunk = [job for job in created if job is not None]

    _set_allow_connections(admin, database, False)
    try:
        assert _terminate_workers(admin, database) >= 1
        publisher = fleet.publisher()
        publisher.publish(dispatch_ref(single))
        publisher.publish_chunk([dispatch_ref(job) for job in chunk])
        wait_until(
            lambda: fleet.log_of("w1").count("claim_deferred_store_unreachable") >= 4,
            60,
            "both messages given back and delivered again",
        )
    finally:
        _set_allow_connections(admin, database, True)
    reopened = time.monotonic()

    ids = [single.id] + [job.id for job in chunk]
    wait_until(lambda: _all(fleet, ids, S.COMPLETED), 60, "every job completed")
    recovered = time.monotonic() - reopened
    assert recovered < 30, recovered  # seconds, not the 600 s sweep
    for job_id in ids:
        assert fleet.job(job_id).attempt == 1
        assert [e[1:3] for e in fleet.effects(job_id)] == [(1, "ran")]
    assert "claim_failed" not in fleet.log_of("w1")


def test_a_chunk_whose_hand_back_fails_leaves_no_lease_held_by_its_worker(
    fleet: Fleet, admin: Connection
) -> None:
    database = make_url(fleet.db_url).database or ""
    fleet.start_worker("w1", JOBENGINE_HANDLER_MODULES=HANDLER_MODULES)
    jobs = submit_jobs(
        fleet.engine,
        fleet.publisher(),
        # The first job's failure cannot be written: the chunk stops there and its hand-back
        # of the two jobs not yet run cannot be written either.
        [NewJob(type="close_the_door", payload={"close_attempts": [1], "raise_after_closing": 1})]
        + [NewJob(type="close_the_door") for _ in range(2 * 3 - 1)],
        chunk_size=3,
    )
    ids = [j.id for j in jobs]
    first, unstarted = ids[0], ids[1:3]
    try:
        wait_until(lambda: "hand_back_failed" in fleet.log_of("w1"), 60, "the hand-back failed")
    finally:
        _set_allow_connections(admin, database, True)
    fleet.start_reaper("reaper-1")

    # Were the jobs not yet run still in the LeaseKeeper, its heartbeat (reconnected by now)
    # would keep their leases fresh and they would stay running for good.
    wait_until(lambda: _all(fleet, ids, S.COMPLETED), 90, "every job completed")
    for job_id in unstarted:
        moves = [(h.from_status, h.to_status, h.reason) for h in fleet.history(job_id)]
        assert (S.RUNNING, S.FAILED, "lease_expired") in moves
        assert [e[1:3] for e in fleet.effects(job_id)] == [(2, "ran")]
    assert "lease_expired" in [h.reason for h in fleet.history(first)]
