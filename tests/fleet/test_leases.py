"""Leases: a killed worker's job is taken back and finished elsewhere; a stale worker whose
lease was taken over can change nothing."""

from __future__ import annotations

import signal

from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.producer import submit_jobs
from tests.fleet import handlers  # noqa: F401
from tests.fleet.conftest import Fleet, wait_until

S = JobStatus


def _started(fleet: Fleet, job_id: int, attempt: int) -> bool:
    return any(e[1] == attempt and e[2] == "started" for e in fleet.effects(job_id))


def test_sigkilled_worker_loses_its_lease_and_another_worker_completes(fleet: Fleet) -> None:
    doomed = fleet.start_worker("doomed")
    [job] = submit_jobs(
        fleet.engine, fleet.publisher(), [NewJob(type="blocking", payload={"block_attempts": [1]})]
    )
    wait_until(lambda: _started(fleet, job.id, 1), 60, "attempt 1 started on the doomed worker")
    fleet.kill(doomed)
    fleet.start_worker("survivor")
    fleet.start_reaper("reaper-1")

    wait_until(lambda: fleet.job(job.id).status is S.COMPLETED, 60, "completed after rescue")
    final = fleet.job(job.id)
    assert final.attempt == 2 and final.result is not None and final.result["attempt"] == 2
    steps = [(h.from_status, h.to_status, h.attempt, h.reason) for h in fleet.history(job.id)]
    assert (S.RUNNING, S.FAILED, 1, "lease_expired") in steps
    assert steps[-1][:3] == (S.RUNNING, S.COMPLETED, 2)
    lost = next(h for h in fleet.history(job.id) if h.reason == "lease_expired")
    assert lost.actor == "reaper-1"
    assert [e[1:3] for e in fleet.effects(job.id)] == [
        (1, "started"),
        (2, "started"),
        (2, "finished"),
    ]


def test_frozen_worker_cannot_complete_a_job_taken_over_while_it_was_frozen(
    fleet: Fleet,
) -> None:
    # A worker frozen mid-job (SIGSTOP: a VM pause, a stuck GC) misses its heartbeats; its job
    # is taken over and finished elsewhere. Thawed, it finishes its handler and must then be
    # unable to record anything: its fencing token is stale.
    frozen = fleet.start_worker("frozen")
    [job] = submit_jobs(
        fleet.engine, fleet.publisher(), [NewJob(type="blocking", payload={"block_attempts": [1]})]
    )
    wait_until(lambda: _started(fleet, job.id, 1), 60, "attempt 1 started on the doomed worker")
    fleet.kill(frozen, signal.SIGSTOP, wait=False)
    fleet.start_worker("fresh")
    fleet.start_reaper("reaper-1")
    wait_until(lambda: fleet.job(job.id).status is S.COMPLETED, 60, "attempt 2 completed")
    history_after_takeover = fleet.history(job.id)

    fleet.release(job.id, 1)
    fleet.kill(frozen, signal.SIGCONT, wait=False)
    wait_until(
        lambda: (job.id, 1, "finished") in [e[:3] for e in fleet.effects(job.id)],
        60,
        "thawed handler finished",
    )
    wait_until(lambda: "outcome_refused" in fleet.log_of("frozen"), 60, "stale outcome refused")

    assert fleet.history(job.id) == history_after_takeover
    final = fleet.job(job.id)
    assert final.status is S.COMPLETED and final.result["attempt"] == 2
    assert [h.to_status for h in fleet.history(job.id)].count(S.COMPLETED) == 1
