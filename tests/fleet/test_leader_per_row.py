"""One bad row costs the fleet that row only: a real reaper rescues twenty expired jobs beside
one whose stored RetryPolicy no longer validates, and promotion and dispatch go on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from jobengine import guard
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.store.database import transaction
from tests.fleet import handlers  # noqa: F401
from tests.fleet.conftest import Fleet, wait_until
from tests.fleet.leaders import REAPER_ENV, orphan_running_job

S = JobStatus


def test_a_bad_retry_policy_fails_its_job_for_good_while_twenty_others_are_rescued_and_run(
    fleet: Fleet,
) -> None:
    healthy = orphan_running_job(fleet.engine, n=20)
    [bad] = orphan_running_job(fleet.engine)
    with transaction(fleet.engine) as conn:
        conn.execute(
            text("UPDATE jobs SET retry_policy = CAST(:p AS jsonb) WHERE id = :id"),
            {"p": '{"max_retries": 1, "backoff": "sideways"}', "id": bad},
        )
        later = guard.create_job(
            conn,
            NewJob(type="effect", not_before=datetime.now(UTC) + timedelta(seconds=1)),
            schedule=False,
        )
    assert later is not None
    fleet.start_worker("w1", concurrency=2)
    fleet.start_reaper("reaper-1", **REAPER_ENV)

    every = [*healthy, later.id]
    wait_until(lambda: all(fleet.job(j).status is S.COMPLETED for j in every), 120, "all ran")
    wait_until(lambda: fleet.job(bad).status is S.FAILED, 60, "the bad one failed for good")
    with fleet.engine.connect() as conn:
        letter = conn.execute(
            text("SELECT error_code, reason, error_message FROM dead_letters WHERE job_id = :j"),
            {"j": bad},
        ).one()
    assert (letter.error_code, letter.reason) == ("RETRY_POLICY_INVALID", "poison")
    assert "sideways" in str(letter.error_message)
    assert "reaper_tick_failed" not in fleet.log_of("reaper-1")
