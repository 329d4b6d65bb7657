"""A job's life on a real fleet: success, and failure retried by policy with backoff."""

from __future__ import annotations

from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.producer import submit_jobs
from tests.fleet import handlers  # noqa: F401  (registers the test job types here too)
from tests.fleet.conftest import Fleet, wait_until

S = JobStatus


def test_job_runs_to_completed_with_full_history(fleet: Fleet) -> None:
    fleet.start_worker("w1")
    [job] = submit_jobs(fleet.engine, fleet.publisher(), [NewJob(type="effect")])

    done = wait_until(lambda: fleet.job(job.id).status is S.COMPLETED or None, 60, "completed")
    assert done
    final = fleet.job(job.id)
    assert final.result == {"attempt": 1}
    assert final.completed_at is not None and final.lease_owner is None
    assert [(h.from_status, h.to_status) for h in fleet.history(job.id)] == [
        (None, S.SCHEDULED),
        (S.SCHEDULED, S.CLAIMED),
        (S.CLAIMED, S.RUNNING),
        (S.RUNNING, S.COMPLETED),
    ]
    assert [e[1:3] for e in fleet.effects(job.id)] == [(1, "ran")]


def test_always_failing_job_is_retried_three_times_with_backoff_then_fails(fleet: Fleet) -> None:
    fleet.start_worker("w1", concurrency=2)
    policy = {
        "max_retries": 3,
        "base_delay_seconds": 0.3,
        "backoff": "exponential",
        "jitter": "none",
    }
    [job] = submit_jobs(
        fleet.engine, fleet.publisher(), [NewJob(type="always_fails", retry_policy=policy)]
    )

    def failed_for_good() -> bool:
        history = fleet.history(job.id)
        return bool(history) and history[-1].to_status is S.FAILED and len(history) >= 14

    wait_until(failed_for_good, 60, "final failure")
    history = fleet.history(job.id)
    final = fleet.job(job.id)
    assert final.status is S.FAILED and final.attempt == 4
    assert (
        final.last_error is not None and "always fails (attempt 4)" in final.last_error["message"]
    )
    retries = [h for h in history if (h.from_status, h.to_status) == (S.FAILED, S.SCHEDULED)]
    assert [h.attempt for h in retries] == [1, 2, 3]
    assert [h.details["countdown"] for h in retries] == [0.3, 0.6, 1.2]
    claims = [h for h in history if h.to_status is S.CLAIMED]
    assert [h.attempt for h in claims] == [1, 2, 3, 4]
    for retry, next_claim in zip(retries, claims[1:], strict=True):
        waited = (next_claim.at - retry.at).total_seconds()
        assert waited >= retry.details["countdown"] - 0.05, (retry, next_claim)
    assert [e[1] for e in fleet.effects(job.id)] == [1, 2, 3, 4]


def test_job_for_the_future_waits_pending_and_runs_when_due(fleet: Fleet) -> None:
    from datetime import UTC, datetime, timedelta

    fleet.start_worker("w1")
    fleet.start_reaper("reaper-1")
    not_before = datetime.now(UTC) + timedelta(seconds=1)
    [job] = submit_jobs(
        fleet.engine, fleet.publisher(), [NewJob(type="effect", not_before=not_before)]
    )
    assert job.status is S.PENDING
    wait_until(lambda: fleet.job(job.id).status is S.COMPLETED, 60, "completed")
    started = next(h for h in fleet.history(job.id) if h.to_status is S.RUNNING)
    assert started.at >= not_before


def test_retry_waiting_longer_than_the_eta_limit_waits_in_postgres_not_in_redis(
    fleet: Fleet,
) -> None:
    fleet.start_worker("w1", JOBENGINE_ETA_LIMIT_SECONDS="0.5")
    policy = {"max_retries": 1, "base_delay_seconds": 1.5, "backoff": "fixed", "jitter": "none"}
    [job] = submit_jobs(
        fleet.engine,
        fleet.publisher(),
        [NewJob(type="flaky", payload={"fail_attempts": [1]}, retry_policy=policy)],
    )

    def retried() -> bool:
        return any(h.to_status is S.SCHEDULED and h.attempt == 1 for h in fleet.history(job.id))

    wait_until(retried, 60, "first attempt failed and was rescheduled")
    waiting = fleet.job(job.id)
    assert waiting.status is S.SCHEDULED and waiting.dispatched_at is None
    assert waiting.not_before is not None

    fleet.start_reaper("reaper-1")
    wait_until(lambda: fleet.job(job.id).status is S.COMPLETED, 60, "completed")
    claims = [h for h in fleet.history(job.id) if h.to_status is S.CLAIMED]
    assert [h.attempt for h in claims] == [1, 2]
    assert claims[1].at >= waiting.not_before
    assert [e[1] for e in fleet.effects(job.id)] == [1, 2]
