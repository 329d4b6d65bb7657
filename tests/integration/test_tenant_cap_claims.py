"""A claim over its tenant's cap: the job stays scheduled without a message, its attempt
untouched; a cap written by another process applies to claims within seconds."""

from __future__ import annotations

import time

from sqlalchemy import Engine, text

from jobengine import guard
from jobengine.domain.job import Job, NewJob
from jobengine.domain.status import JobStatus
from jobengine.execution import Executor
from jobengine.store.database import transaction
from jobengine.store.jobs_repository import JobsRepository, LeaseRepository
from tests.fleet.conftest import wait_until

LIMITS_REFRESH_SECONDS = 2.0


def published_job(engine: Engine, tenant: str) -> Job:
    """A scheduled job whose message is out, as after a producer's publish."""
    with transaction(engine) as conn:
        job = guard.create_job(conn, NewJob(type="noop", tenant_id=tenant), schedule=True)
        assert job is not None
        LeaseRepository(conn).mark_dispatched([job.id])
    return job


def test_a_cap_written_elsewhere_defers_claims_within_seconds_leaving_the_job_scheduled(
    engine: Engine,
) -> None:
    executor = Executor(engine, lease_ttl_seconds=30)
    first = published_job(engine, "acme")
    assert executor.claim(first.id, "w") is not None  # caches "no tenant has a cap"
    with transaction(engine) as conn:
        conn.execute(text("INSERT INTO tenant_quotas (tenant_id, max_running) VALUES ('acme', 1)"))
    started = time.monotonic()
    refused: list[Job] = []

    def a_claim_is_deferred() -> bool:
        job = published_job(engine, "acme")
        if executor.claim(job.id, "w") is None:
            refused.append(job)
            return True
        return False

    wait_until(a_claim_is_deferred, 10, "the cap defers a claim")
    assert time.monotonic() - started < LIMITS_REFRESH_SECONDS + 1
    with transaction(engine) as conn:
        kept = JobsRepository(conn).get(refused[0].id)
    assert (kept.status, kept.attempt, kept.dispatched_at) == (JobStatus.SCHEDULED, 0, None)
    other = published_job(engine, "other")
    assert executor.claim(other.id, "w") is not None  # another tenant is not held
