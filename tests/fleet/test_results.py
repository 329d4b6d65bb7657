"""A handler's result on a real fleet: kept when within JOBENGINE_RESULT_MAX_BYTES, and over
it the attempt fails for good with a clear error and a dead letter, never left running."""

from __future__ import annotations

import json

from jobengine.dead_letters import DeadLetters
from jobengine.domain.dead_letter import DeadLetterReason
from jobengine.domain.job import NewJob
from jobengine.domain.status import FINAL_STATES, JobStatus
from jobengine.producer import submit_jobs
from tests.fleet import artifact_handlers  # noqa: F401  (registers the test job types here too)
from tests.fleet.conftest import Fleet, wait_until

HANDLERS = json.dumps(["tests.fleet.handlers", "tests.fleet.artifact_handlers"])
BOUND = 2000
OVERHEAD = len('{"text":""}')
"""What the result's JSON adds to the text it carries."""


def test_a_result_over_the_bound_fails_the_attempt_for_good_with_a_dead_letter(
    fleet: Fleet,
) -> None:
    fleet.start_worker(
        "w1", JOBENGINE_HANDLER_MODULES=HANDLERS, JOBENGINE_RESULT_MAX_BYTES=str(BOUND)
    )
    small, big = submit_jobs(
        fleet.engine,
        fleet.publisher(),
        [
            NewJob(type="sized_result", payload={"bytes": BOUND - 100}),
            NewJob(type="sized_result", payload={"bytes": BOUND + 1}),
        ],
    )
    wait_until(lambda: fleet.job(big.id).status in FINAL_STATES, 60, "big result's job final")
    wait_until(lambda: fleet.job(small.id).status in FINAL_STATES, 60, "small result's job final")

    kept = fleet.job(small.id)
    assert kept.status is JobStatus.COMPLETED
    assert kept.result == {"text": "x" * (BOUND - 100)}

    failed = fleet.job(big.id)
    assert failed.status is JobStatus.FAILED and failed.attempt == 1
    assert failed.result is None and failed.lease_owner is None
    error = failed.last_error
    assert error is not None and error["code"] == "RESULT_TOO_LARGE"
    size = BOUND + 1 + OVERHEAD
    assert error["message"] == (
        f"handler returned a result of {size} bytes as JSON, over the limit of {BOUND} bytes"
    )
    assert error["details"]["size_bytes"] == size
    assert error["details"]["max_bytes"] == BOUND
    assert "ctx.attach" in error["details"]["hint"]

    letters = DeadLetters(fleet.engine)
    letter = letters.get(letters.id_for_job(big.id))
    assert letter.reason is DeadLetterReason.NON_RETRYABLE
    assert letter.error_class == "jobengine.results.ResultTooLarge"
    steps = [(h.from_status, h.to_status) for h in fleet.history(big.id)]
    assert steps[-1] == (JobStatus.RUNNING, JobStatus.FAILED)
    assert (JobStatus.FAILED, JobStatus.SCHEDULED) not in steps
