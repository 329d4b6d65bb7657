"""A revoke through Celery's own control channel cancels the job; one that a cancel sent
files nothing more."""

from __future__ import annotations

from sqlalchemy import text

from jobengine.audit.origin import Origin
from jobengine.cancellation import cancel_job
from jobengine.dispatch import task_id_for
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.fleet import publisher_app
from jobengine.producer import submit_jobs
from tests.fleet import handlers  # noqa: F401
from tests.fleet.conftest import Fleet, wait_until

S = JobStatus


def test_revoking_a_running_task_with_terminate_cancels_its_job(fleet: Fleet) -> None:
    fleet.start_worker("w1")
    [job] = submit_jobs(
        fleet.engine, fleet.publisher(), [NewJob(type="blocking", payload={"block_attempts": [1]})]
    )
    wait_until(lambda: fleet.job(job.id).status is S.RUNNING, 60, "running")

    control = publisher_app(fleet.settings(), fleet.broker_url).control
    control.revoke(task_id_for(job.id, 1), terminate=True, signal="SIGKILL")

    wait_until(lambda: fleet.job(job.id).status is S.CANCELLED, 60, "cancelled")
    last = fleet.history(job.id)[-1]
    assert (last.from_status, last.to_status, last.actor) == (
        S.RUNNING,
        S.CANCELLED,
        "celery:revoke",
    )
    assert last.reason == "revoked and terminated"
    assert not any(e[2] == "finished" for e in fleet.effects(job.id))
    with fleet.engine.connect() as conn:  # the audit log files the revoke, once
        filed = conn.execute(
            text("SELECT actor, surface, action, object_id, outcome FROM audit_entries")
        ).all()
    assert [tuple(e) for e in filed] == [
        ("celery:revoke", "flower", "job.cancel", str(job.id), "done")
    ]


class ControlRevoker:
    """The revoke a REST, CLI or console cancel sends a running job's worker."""

    def __init__(self, fleet: Fleet) -> None:
        self._control = publisher_app(fleet.settings(), fleet.broker_url).control

    def revoke(self, task_id: str, *, terminate: bool = False, signal: str = "SIGTERM") -> None:
        self._control.revoke(task_id, terminate=terminate, signal=signal)


def test_cancelling_a_running_job_files_one_entry_and_the_revoke_it_sends_files_none(
    fleet: Fleet,
) -> None:
    fleet.start_worker("w1")
    [job] = submit_jobs(
        fleet.engine, fleet.publisher(), [NewJob(type="blocking", payload={"block_attempts": [1]})]
    )
    wait_until(lambda: fleet.job(job.id).status is S.RUNNING, 60, "running")

    origin = Origin(actor="cli:ops@host", surface="cli")
    done = cancel_job(
        fleet.engine, job.id, actor=origin.actor, origin=origin, revoker=ControlRevoker(fleet)
    )
    assert done.revoked_task == task_id_for(job.id, 1)
    wait_until(
        lambda: (
            f"job_id={job.id}" in fleet.log_of("w1")
            and "revoke_of_cancelled_job" in fleet.log_of("w1")
        ),
        60,
        "the worker acting on the revoke",
    )
    with fleet.engine.connect() as conn:
        filed = conn.execute(text("SELECT actor, surface, action FROM audit_entries")).all()
    assert [tuple(e) for e in filed] == [("cli:ops@host", "cli", "job.cancel")]
    assert fleet.history(job.id)[-1].actor == "cli:ops@host"
