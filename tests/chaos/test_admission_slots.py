"""Claim admission when Postgres has no free connection slot, on a private server.

A claimer that cannot get a slot sees ``OVERLOADED`` (53300, retryable), slows its claims down
instead of hammering the server, and once slots are free again claims every job, none lost.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from jobengine import guard
from jobengine.admission import Admission, AdmissionPolicy
from jobengine.domain.job import NewJob
from jobengine.errors import StoreOverloaded
from jobengine.execution import Executor
from jobengine.store.database import SharedConnection, make_engine, transaction, unpooled_engine
from jobengine.store.jobs_repository import LeaseRepository
from tests.chaos.servers import ChaosPostgres
from tests.fleet.conftest import wait_until


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[ChaosPostgres]:
    server = ChaosPostgres(tmp_path / "pg", max_connections=12)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_claimer_without_a_free_slot_slows_down_and_claims_every_job_once_slots_free(
    pg: ChaosPostgres,
) -> None:
    admin = make_engine(pg.socket_url, pool_size=1, max_overflow=0)
    with transaction(admin) as conn:
        ids = []
        for _ in range(10):
            job = guard.create_job(conn, NewJob(type="noop"), schedule=True)
            assert job is not None
            ids.append(job.id)
        LeaseRepository(conn).mark_dispatched(ids)
    admin.dispose()

    worker = unpooled_engine(pg.url, application_name="jobengine-worker:test")
    gate = Admission(AdmissionPolicy(floor_per_second=2.0))
    executor = Executor(
        worker,
        lease_ttl_seconds=60,
        connection=SharedConnection(worker),
        claim_patience_seconds=1.0,
        admission=gate,
    )
    pending = list(ids)
    with pg.slots_held(leave_free=0):
        with pytest.raises(StoreOverloaded) as refused:
            executor.claim(pending[0], "w")
        assert refused.value.retryable and refused.value.code == "OVERLOADED"
        assert gate.rate is not None and gate.rate <= 2.0, "the claimer slowed to its floor"
    wait_until(lambda: executor.claim(pending[0], "w") is not None, 30, "a claim once slots free")
    for job_id in pending[1:]:
        assert executor.claim(job_id, "w") is not None

    observer = make_engine(pg.socket_url, pool_size=1, max_overflow=0)
    with observer.connect() as conn:
        rows = conn.execute(text("SELECT status, attempt, count(*) FROM jobs GROUP BY 1, 2")).all()
    observer.dispose()
    worker.dispose()
    assert rows == [("running", 1, 10)], "every job claimed once, none lost"
