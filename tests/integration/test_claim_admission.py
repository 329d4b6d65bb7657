"""Claim admission against a real Postgres made slow: claims slow down, recover, lose nothing.

Saturation is a trigger that sleeps in every UPDATE of ``jobs`` (the test's own, dropped
after): each claim then takes about 0.1 s. Unpaced, a claimer would fire about ten claims a
second into that server; paced, it backs off to a few, and once the trigger is gone it climbs
back to unpaced within seconds.
"""

from __future__ import annotations

import time

from sqlalchemy import Engine, text

from config.settings import Settings
from jobengine import guard
from jobengine.admission import Admission, AdmissionPolicy
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.execution import Executor
from jobengine.store.database import transaction
from jobengine.store.jobs_repository import LeaseRepository
from tests.fleet.conftest import wait_until
from workers.runtime import admission_of

CLAIM_SLEEP_SECONDS = 0.1
SATURATED_SECONDS = 3.0

SLOW_UPDATES = f"""
CREATE FUNCTION test_slow_claims() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep({CLAIM_SLEEP_SECONDS}); RETURN NEW; END $$;
CREATE TRIGGER test_slow_claims BEFORE UPDATE ON jobs FOR EACH ROW
  EXECUTE FUNCTION test_slow_claims();
"""
HEALTHY_AGAIN = "DROP TRIGGER test_slow_claims ON jobs; DROP FUNCTION test_slow_claims();"


def published_jobs(engine: Engine, count: int) -> list[int]:
    with transaction(engine) as conn:
        ids = []
        for _ in range(count):
            job = guard.create_job(conn, NewJob(type="noop"), schedule=True)
            assert job is not None
            ids.append(job.id)
        LeaseRepository(conn).mark_dispatched(ids)
    return ids


def run_sql(engine: Engine, sql: str) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(sql)


def test_claims_slow_down_while_postgres_is_slow_and_recover_when_it_is_healthy_losing_no_job(
    engine: Engine,
) -> None:
    gate = Admission(AdmissionPolicy(slow_claim_seconds=0.05, ceiling_per_second=50.0))
    executor = Executor(engine, lease_ttl_seconds=60, admission=gate)
    ids = published_jobs(engine, 200)
    pending = list(ids)
    claimed: list[int] = []

    def claim_next() -> float:
        started = time.monotonic()
        claim = executor.claim(pending.pop(0), "w")
        assert claim is not None
        claimed.append(claim.job_id)
        return started

    for _ in range(20):
        claim_next()
    assert gate.rate is None, "healthy claims are not paced"

    run_sql(engine, SLOW_UPDATES)
    saturated_at = time.monotonic()
    starts = []
    while time.monotonic() - saturated_at < SATURATED_SECONDS:
        starts.append(claim_next())
    slowed_to = gate.rate
    last_second = [s for s in starts if s > time.monotonic() - 1.5]
    run_sql(engine, HEALTHY_AGAIN)

    assert slowed_to is not None and slowed_to <= 2.0, f"paced at {slowed_to}/s"
    unpaced = 1.5 / CLAIM_SLEEP_SECONDS
    assert len(last_second) <= unpaced / 3, (
        f"{len(last_second)} claims in the last 1.5 s of saturation, unpaced about {unpaced:.0f}"
    )

    healthy_at = time.monotonic()
    wait_until(lambda: claim_next() and gate.rate is None, 20, "the gate opening again")
    recovered_in = time.monotonic() - healthy_at
    assert recovered_in < 15, f"recovered in {recovered_in:.1f} s"
    while pending:
        claim_next()

    with transaction(engine) as conn:
        rows = conn.execute(
            text("SELECT status, attempt, count(*) FROM jobs WHERE id = ANY(:ids) GROUP BY 1, 2"),
            {"ids": ids},
        ).all()
    assert rows == [(JobStatus.RUNNING.value, 1, len(ids))], "every job claimed once, none lost"
    assert sorted(claimed) == sorted(ids)


def test_with_admission_switched_off_slow_claims_are_never_paced(engine: Engine) -> None:
    gate = admission_of(Settings(claim_admission=False, claim_admission_slow_seconds=0.05))
    executor = Executor(engine, lease_ttl_seconds=60, admission=gate)
    ids = published_jobs(engine, 10)
    run_sql(engine, SLOW_UPDATES)
    try:
        took = [timed_claim(executor, job_id) for job_id in ids]
    finally:
        run_sql(engine, HEALTHY_AGAIN)
    assert min(took) >= CLAIM_SLEEP_SECONDS, "every claim met the slow server"
    assert gate.rate is None, "switched off, the gate never paces"
    assert gate.admit() == 0.0


def timed_claim(executor: Executor, job_id: int) -> float:
    started = time.monotonic()
    assert executor.claim(job_id, "w") is not None
    return time.monotonic() - started
