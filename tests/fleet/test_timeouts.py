"""Time limits on real worker processes: soft tells the handler, hard kills its process."""

from __future__ import annotations

from jobengine.dispatch import HARD_LIMIT_GRACE
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.producer import submit_jobs
from tests.fleet import handlers  # noqa: F401
from tests.fleet.conftest import Fleet, wait_until

S = JobStatus
ONE_RETRY = {"max_retries": 1, "base_delay_seconds": 0.2, "jitter": "none"}


def _failed_for_good(fleet: Fleet, job_id: int) -> bool:
    history = fleet.history(job_id)
    return history[-1].to_status is S.FAILED and fleet.job(job_id).status is S.FAILED


def test_soft_time_limit_fails_the_attempt_with_timeout_and_the_policy_retries(
    fleet: Fleet,
) -> None:
    fleet.start_worker("w1")
    [job] = submit_jobs(
        fleet.engine,
        fleet.publisher(),
        [NewJob(type="polite", time_limit_seconds=0.5, retry_policy=ONE_RETRY)],
    )
    wait_until(lambda: _failed_for_good(fleet, job.id), 60, "two timeouts")

    final = fleet.job(job.id)
    assert final.attempt == 2 and final.last_error is not None
    assert final.last_error["code"] == "TIMEOUT"
    failures = [h for h in fleet.history(job.id) if h.to_status is S.FAILED]
    assert [(h.attempt, h.reason) for h in failures] == [(1, "TIMEOUT"), (2, "TIMEOUT")]
    assert [e[1:3] for e in fleet.effects(job.id)] == [
        (1, "started"),
        (1, "cleaned up"),
        (2, "started"),
        (2, "cleaned up"),
    ]


def test_hard_time_limit_kills_the_process_records_timeout_and_the_fleet_keeps_working(
    fleet: Fleet,
) -> None:
    fleet.start_worker("w1")
    [job] = submit_jobs(
        fleet.engine,
        fleet.publisher(),
        [NewJob(type="stubborn", time_limit_seconds=0.5, retry_policy=ONE_RETRY)],
    )
    wait_until(lambda: _failed_for_good(fleet, job.id), 30 + 4 * HARD_LIMIT_GRACE, "two kills")

    final = fleet.job(job.id)
    assert final.attempt == 2 and final.last_error is not None
    assert final.last_error["code"] == "TIMEOUT"
    assert final.last_error["class"].endswith("TimeLimitExceeded")
    reasons = [(h.from_status, h.to_status, h.reason) for h in fleet.history(job.id)]
    assert reasons.count((S.RUNNING, S.FAILED, "TIMEOUT")) == 2
    started_pids = {e[3] for e in fleet.effects(job.id) if e[2] == "started"}
    assert len(started_pids) == 2  # the killed pool process was replaced
    assert "Hard time limit" in fleet.log_of("w1")

    [after] = submit_jobs(fleet.engine, fleet.publisher(), [NewJob(type="effect")])
    wait_until(lambda: fleet.job(after.id).status is S.COMPLETED, 60, "fleet still works")
