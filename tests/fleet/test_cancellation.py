"""Cancellation on a real fleet: before start, while running, twice, and too late."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jobengine.cancellation import JobAlreadyFinal, cancel_job
from jobengine.catalogue import announce
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.fleet import publisher_app
from jobengine.job_types import registry
from jobengine.producer import submit_jobs
from tests.fleet import handlers  # noqa: F401
from tests.fleet.conftest import Fleet, wait_until
from tests.fleet.test_delivery import broker_idle

S = JobStatus


def test_job_cancelled_before_start_never_runs_its_handler(fleet: Fleet) -> None:
    announce(fleet.engine, registry.specs(), "tests")  # as the fleet's workers did before
    [job] = submit_jobs(fleet.engine, fleet.publisher(), [NewJob(type="effect")])
    outcome = cancel_job(fleet.engine, job.id, actor="test", reason="changed my mind")
    assert outcome.changed and outcome.job.status is S.CANCELLED and outcome.revoked_task is None

    fleet.start_worker("w1")
    wait_until(lambda: "claim_refused" in fleet.log_of("w1"), 60, "its message refused")
    wait_until(lambda: broker_idle(fleet.broker_url), 60, "its message consumed")
    assert fleet.effects(job.id) == []
    assert [h.to_status for h in fleet.history(job.id)][-1] is S.CANCELLED


def test_cancelling_a_running_job_revokes_its_task_and_the_handler_stops(fleet: Fleet) -> None:
    fleet.start_worker("w1")
    [job] = submit_jobs(
        fleet.engine, fleet.publisher(), [NewJob(type="blocking", payload={"block_attempts": [1]})]
    )
    wait_until(lambda: fleet.job(job.id).status is S.RUNNING, 60, "running")
    control = publisher_app(fleet.settings(), fleet.broker_url).control

    outcome = cancel_job(fleet.engine, job.id, actor="test", revoker=control)

    assert outcome.changed and outcome.revoked_task == f"job-{job.id}-1"
    wait_until(lambda: "Terminating" in fleet.log_of("w1"), 60, "task terminated")
    assert fleet.job(job.id).status is S.CANCELLED
    assert not any(e[2] == "finished" for e in fleet.effects(job.id))
    finals = [h for h in fleet.history(job.id) if h.to_status in (S.CANCELLED, S.COMPLETED)]
    assert [(h.from_status, h.to_status) for h in finals] == [(S.RUNNING, S.CANCELLED)]


def test_handler_sees_the_cancellation_and_its_late_result_changes_nothing(fleet: Fleet) -> None:
    fleet.start_worker("w1")
    [job] = submit_jobs(
        fleet.engine, fleet.publisher(), [NewJob(type="blocking", payload={"block_attempts": [1]})]
    )
    wait_until(lambda: fleet.job(job.id).status is S.RUNNING, 60, "running")
    history_at_cancel = cancel_job(fleet.engine, job.id, actor="test", revoker=None)
    assert history_at_cancel.changed

    wait_until(
        lambda: any(e[2] == "finished" for e in fleet.effects(job.id)),
        60,
        "handler saw ctx.cancelled and returned",
    )
    wait_until(lambda: "outcome_refused" in fleet.log_of("w1"), 60, "late success refused")
    final = fleet.job(job.id)
    assert final.status is S.CANCELLED and final.result is None
    assert fleet.history(job.id)[-1].to_status is S.CANCELLED


def test_cancelling_twice_is_harmless_and_a_final_job_refuses_clearly(fleet: Fleet) -> None:
    fleet.start_worker("w1")
    far_future = datetime.now(UTC) + timedelta(days=365)
    done, pending = submit_jobs(
        fleet.engine,
        fleet.publisher(),
        [NewJob(type="effect"), NewJob(type="effect", not_before=far_future)],
    )
    wait_until(lambda: fleet.job(done.id).status is S.COMPLETED, 60, "completed")
    with pytest.raises(JobAlreadyFinal) as refused:
        cancel_job(fleet.engine, done.id, actor="test")
    assert "already completed" in refused.value.message and refused.value.hint

    first = cancel_job(fleet.engine, pending.id, actor="test")
    second = cancel_job(fleet.engine, pending.id, actor="test")
    assert first.changed and not second.changed
    assert [h.to_status for h in fleet.history(pending.id)].count(S.CANCELLED) == 1
