"""A backlog travels in chunks: one message, several jobs, each still guarded on its own."""

from __future__ import annotations

from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.producer import submit_jobs
from tests.fleet import handlers  # noqa: F401
from tests.fleet.conftest import Fleet, wait_until

S = JobStatus
CHUNK = 10


def _all(fleet: Fleet, ids: list[int], status: JobStatus) -> bool:
    return all(fleet.job(i).status is status for i in ids)


def test_chunked_backlog_retries_its_failures_and_completes_every_job_once(fleet: Fleet) -> None:
    fleet.start_worker("w1", concurrency=2)
    jobs = submit_jobs(
        fleet.engine,
        fleet.publisher(),
        [
            NewJob(type="flaky", payload={"fail_attempts": [1] if n % 3 == 0 else []})
            for n in range(4 * CHUNK)
        ],
        chunk_size=CHUNK,
    )
    ids = [j.id for j in jobs]
    wait_until(lambda: _all(fleet, ids, S.COMPLETED), 120, "every job completed")

    assert "[chunk-" in fleet.log_of("w1")
    for n, job_id in enumerate(ids):
        expected_attempts = 2 if n % 3 == 0 else 1
        assert fleet.job(job_id).attempt == expected_attempts
        assert [e[1] for e in fleet.effects(job_id)] == list(range(1, expected_attempts + 1))
        completions = [h for h in fleet.history(job_id) if h.to_status is S.COMPLETED]
        assert len(completions) == 1


def test_worker_killed_mid_chunk_charges_the_jobs_started_with_it_and_loses_none(
    fleet: Fleet,
) -> None:
    """A chunk is claimed and started in one statement, so each of its jobs has counted an
    attempt before its turn: a worker that dies mid-chunk leaves them all ``running``, and the
    leader takes each back as ``lease_expired`` (an attempt spent, as for the one that ran)."""
    doomed = fleet.start_worker("doomed")
    jobs = submit_jobs(
        fleet.engine,
        fleet.publisher(),
        [NewJob(type="blocking", payload={"block_attempts": [1]})]
        + [NewJob(type="blocking", payload={}) for _ in range(2 * CHUNK - 1)],
        chunk_size=CHUNK,
    )
    ids = [j.id for j in jobs]
    first, rest_of_chunk = ids[0], ids[1:CHUNK]
    wait_until(
        lambda: any(e[2] == "started" for e in fleet.effects(first)), 60, "first job started"
    )
    assert all(fleet.job(i).status is S.RUNNING for i in rest_of_chunk)
    fleet.kill(doomed)
    fleet.start_worker("survivor")
    fleet.start_reaper("reaper-1")

    wait_until(lambda: _all(fleet, ids, S.COMPLETED), 120, "every job completed")
    assert [h.reason for h in fleet.history(first)].count("lease_expired") == 1
    for job_id in rest_of_chunk:
        moves = [(h.from_status, h.to_status, h.reason) for h in fleet.history(job_id)]
        assert (S.RUNNING, S.FAILED, "lease_expired") in moves
        assert fleet.job(job_id).attempt == 2
        assert [e[2] for e in fleet.effects(job_id)] == ["started", "finished"]
