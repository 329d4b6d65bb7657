"""A tenant's cap holds across the fleet's worker processes, enforced by Postgres; jobs kept
back wait scheduled and are published again as slots free; other tenants are not held."""

from __future__ import annotations

from sqlalchemy import text

from jobengine.catalogue import announce
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.job_types import registry
from jobengine.producer import submit_jobs
from jobengine.quotas.book import Quota, QuotaRepository
from jobengine.store.database import transaction
from tests.fleet import handlers  # noqa: F401
from tests.fleet.conftest import Fleet, wait_until

S = JobStatus
CAP = 2
JOBS = 24


def max_leased_at_once(fleet: Fleet, tenant: str) -> int:
    """Sweep the tenant's history in id order: a lease starts at `→ claimed`, ends when it
    leaves claimed/running."""
    with fleet.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT h.from_status, h.to_status FROM job_history h"
                " JOIN jobs j ON j.id = h.job_id WHERE j.tenant_id = :t ORDER BY h.id"
            ),
            {"t": tenant},
        ).all()
    leased = {"claimed", "running"}
    current = peak = 0
    for from_status, to_status in rows:
        if to_status in leased and from_status not in leased:
            current += 1
        elif from_status in leased and to_status not in leased:
            current -= 1
        peak = max(peak, current)
    return peak


def test_a_cap_of_two_holds_across_four_worker_processes_and_leaves_other_tenants_free(
    fleet: Fleet,
) -> None:
    with transaction(fleet.engine) as conn:
        QuotaRepository(conn).set(Quota("capped", max_running=CAP))
    fleet.start_worker("w1", concurrency=2)
    fleet.start_worker("w2", concurrency=2)
    fleet.start_reaper("reaper-1")
    sleep = {"seconds": 0.2}
    jobs = submit_jobs(
        fleet.engine,
        fleet.publisher(),
        [NewJob(type="sleep", tenant_id="capped", payload=sleep) for _ in range(JOBS)]
        + [NewJob(type="sleep", tenant_id="free", payload=sleep) for _ in range(8)],
    )

    wait_until(
        lambda: all(fleet.job(j.id).status is S.COMPLETED for j in jobs), 180, "all completed"
    )
    assert max_leased_at_once(fleet, "capped") == CAP
    assert max_leased_at_once(fleet, "free") > CAP  # four processes, and no cap on this tenant
    assert all(fleet.job(j.id).attempt == 1 for j in jobs)  # kept back costs no attempt


def test_jobs_published_before_the_cap_are_kept_back_at_claim_and_published_again_later(
    fleet: Fleet,
) -> None:
    held = {"block_attempts": [1]}
    announce(fleet.engine, [registry.get("blocking")], "test")  # as its workers will, later
    jobs = submit_jobs(  # no cap yet: every job's message goes to the broker now
        fleet.engine,
        fleet.publisher(),
        [NewJob(type="blocking", tenant_id="capped", payload=held) for _ in range(JOBS)],
    )
    with transaction(fleet.engine) as conn:
        QuotaRepository(conn).set(Quota("capped", max_running=CAP))
    fleet.start_worker("w1", concurrency=2)
    fleet.start_worker("w2", concurrency=2)
    fleet.start_reaper("reaper-1")

    # The first two hold the cap until released, so every other claim meets it, however fast
    # one worker starts before the other.
    def deferred() -> str:
        return fleet.log_of("w1") + fleet.log_of("w2")

    wait_until(lambda: "claim_deferred_by_tenant_cap" in deferred(), 120, "a claim kept back")
    assert "max_running=2" in deferred()
    for job in jobs:
        fleet.release(job.id, 1)
    wait_until(
        lambda: all(fleet.job(j.id).status is S.COMPLETED for j in jobs), 180, "all completed"
    )
    assert max_leased_at_once(fleet, "capped") == CAP
    assert all(fleet.job(j.id).attempt == 1 for j in jobs)
