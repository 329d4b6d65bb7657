"""Sealed (air-gap) mode: only the database and the broker are reachable.

Attempts are caught by a recording fake below the guard (tests/fleet/handlers.py), so not a
single packet is sent to any address outside loopback, whatever happens.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from jobengine.catalogue import announce
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.embedded import free_loopback_port
from jobengine.errors import NetworkNotAllowed
from jobengine.job_types import JobTypeSpec
from jobengine.producer import submit_jobs
from tests.fleet import handlers  # noqa: F401
from tests.fleet.conftest import Fleet, wait_until

S = JobStatus
OUTSIDE = "203.0.113.7"  # TEST-NET-3: documentation only; never contacted


def test_handler_egress_is_blocked_recorded_and_never_retried(fleet: Fleet, tmp_path: Path) -> None:
    fake_log = tmp_path / "fake-net.log"
    fleet.start_worker("sealed", JOBENGINE_SEALED="1", JOBENGINE_TEST_FAKE_NET_LOG=str(fake_log))
    outside, side_door, fine = submit_jobs(
        fleet.engine,
        fleet.publisher(),
        [
            NewJob(type="phone_home", payload={"host": OUTSIDE, "port": 443}),
            NewJob(type="phone_home", payload={"host": "127.0.0.1", "port": free_loopback_port()}),
            NewJob(type="effect"),
        ],
    )
    for job in (outside, side_door):
        wait_until(lambda j=job: fleet.job(j.id).status is S.FAILED, 60, "blocked")  # type: ignore[misc]
        final = fleet.job(job.id)
        assert final.attempt == 1  # EgressBlocked never retries
        assert final.last_error is not None and final.last_error["code"] == "EGRESS_BLOCKED"
        assert [e[2] for e in fleet.effects(job.id)] == ["started"]
    wait_until(lambda: fleet.job(fine.id).status is S.COMPLETED, 60, "db and broker still work")
    assert "egress_blocked" in fleet.log_of("sealed") and OUTSIDE in fleet.log_of("sealed")
    assert not fake_log.exists() or fake_log.read_text() == ""  # nothing got past the guard


def test_job_type_needing_the_network_is_refused_at_submission_when_sealed(
    fleet: Fleet,
) -> None:
    announce(fleet.engine, [JobTypeSpec("fetch_url", needs_network=True)], "tests")
    with pytest.raises(NetworkNotAllowed) as refused:
        submit_jobs(fleet.engine, fleet.publisher(), [NewJob(type="fetch_url")], sealed=True)
    assert "needs the network" in refused.value.message and refused.value.hint
    with fleet.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM jobs")).scalar() == 0
    [accepted] = submit_jobs(fleet.engine, fleet.publisher(), [NewJob(type="fetch_url")])
    assert accepted.status is S.SCHEDULED  # unsealed, the same type is accepted


def test_sealed_installation_refuses_network_types_even_when_the_producer_does_not_say(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    from config.settings import Settings

    announce(fleet.engine, [JobTypeSpec("fetch_url", needs_network=True)], "tests")
    monkeypatch.setattr("jobengine.submission.get_settings", lambda: Settings(sealed=True))
    with pytest.raises(NetworkNotAllowed):
        submit_jobs(fleet.engine, fleet.publisher(), [NewJob(type="fetch_url")])
    with fleet.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM jobs")).scalar() == 0
