"""The built-in job types on a real fleet: shell outcomes and stored progress."""

from __future__ import annotations

import pytest

from jobengine import guard
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.errors import PayloadInvalid
from jobengine.producer import submit_jobs
from jobengine.store.database import transaction
from tests.fleet.conftest import Fleet, wait_until

S = JobStatus
NO_RETRY = {"max_retries": 0}


def test_shell_exit_zero_completes_with_its_output_and_nonzero_fails_with_details(
    fleet: Fleet,
) -> None:
    fleet.start_worker("w1", concurrency=2)
    ok, broken = submit_jobs(
        fleet.engine,
        fleet.publisher(),
        [
            NewJob(type="shell", payload={"command": ["echo", "hello from shell"]}),
            NewJob(
                type="shell",
                payload={"command": "echo partial; echo 'disk on fire' >&2; exit 7"},
                retry_policy=NO_RETRY,
            ),
        ],
    )
    wait_until(lambda: fleet.job(ok.id).status is S.COMPLETED, 60, "shell success")
    wait_until(lambda: fleet.job(broken.id).status is S.FAILED, 60, "shell failure")

    assert fleet.job(ok.id).result == {
        "exit_code": 0,
        "stdout": "hello from shell\n",
        "stderr": "",
        "stdout_bytes": 17,
        "stderr_bytes": 0,
        "stdout_dropped_bytes": 0,
        "stderr_dropped_bytes": 0,
    }
    error = fleet.job(broken.id).last_error
    assert error is not None
    assert error["code"] == "COMMAND_FAILED"
    assert error["details"] == {
        "exit_code": 7,
        "stdout": "partial\n",
        "stderr": "disk on fire\n",
        "stdout_bytes": 8,
        "stderr_bytes": 13,
        "stdout_dropped_bytes": 0,
        "stderr_dropped_bytes": 0,
    }
    assert "exited with 7" in error["message"]


def test_shell_without_a_command_is_refused_at_submission_and_poison_if_stored(
    fleet: Fleet,
) -> None:
    with pytest.raises(PayloadInvalid, match="'command' is a required property"):
        submit_jobs(fleet.engine, fleet.publisher(), [NewJob(type="shell", payload={})])
    fleet.start_worker("w1")
    fleet.start_reaper("reaper")  # publishes what the guard stored without a message
    with transaction(fleet.engine) as conn:  # stored before the type declared its shape
        job = guard.create_job(conn, NewJob(type="shell", payload={}), schedule=True)
    assert job is not None
    wait_until(lambda: fleet.job(job.id).status is S.FAILED, 60, "refused command")
    final = fleet.job(job.id)
    assert final.attempt == 1
    assert final.last_error is not None and final.last_error["code"] == "POISON_MESSAGE"


def test_fake_inference_stores_its_progress_and_result(fleet: Fleet) -> None:
    fleet.start_worker("w1")
    [job] = submit_jobs(
        fleet.engine,
        fleet.publisher(),
        [NewJob(type="fake_inference", payload={"steps": 4, "step_seconds": 0.01, "prompt": "hi"})],
    )
    wait_until(lambda: fleet.job(job.id).status is S.COMPLETED, 60, "inference done")
    final = fleet.job(job.id)
    assert final.progress == {"fraction": 1.0, "message": "step 4/4"}
    assert final.result == {"steps": 4, "output": "fake output for hi"}


def test_progress_is_emitted_as_timeline_events_between_running_and_completed(
    fleet: Fleet,
) -> None:
    from jobengine.store.database import transaction
    from jobengine.store.history_repository import JobHistoryRepository

    fleet.start_worker("w1")
    [job] = submit_jobs(
        fleet.engine,
        fleet.publisher(),
        [NewJob(type="fake_inference", payload={"steps": 4, "step_seconds": 0.01})],
    )
    wait_until(lambda: fleet.job(job.id).status is S.COMPLETED, 60, "inference done")
    with transaction(fleet.engine) as conn:
        events = JobHistoryRepository(conn).events_for_job(job.id)

    assert [e.id for e in events] == sorted(e.id for e in events)
    kinds = [
        e.event.progress["fraction"] if e.type == "job.progress" else e.event.to_status.value
        for e in events
    ]
    assert kinds == [
        "scheduled",
        "claimed",
        "running",
        0.25,
        0.5,
        0.75,
        1.0,
        "completed",
    ]
