"""A run's roots, its released children and retries take their turn in fair-shared queues
and under tenant caps: none is published by its producer or worker past the leader's fill and
cap admissions (``jobengine.quotas``), and each is left unmarked for them to publish."""

from __future__ import annotations

from sqlalchemy import Engine, text

from jobengine.attempt import Attempts
from jobengine.domain.job import NewJob
from jobengine.domain.run import RunJobSpec, RunSpec
from jobengine.domain.status import JobStatus
from jobengine.execution import Executor
from jobengine.lease import LeaseKeeper
from jobengine.outcomes import Retry
from jobengine.quotas.book import Quota, QuotaRepository
from jobengine.quotas.fair import FairFill
from jobengine.runs.producer import submit_run_now
from jobengine.store.database import transaction
from jobengine.submission import submit
from tests.api.conftest import RecordingPublisher
from tests.integration.test_fair_fill import Leading
from tests.integration.test_leadership import registry


def fair_queue_and_cap(engine: Engine) -> None:
    with transaction(engine) as conn:
        QuotaRepository(conn).set_fair_queue("shared", 4)
        QuotaRepository(conn).set(Quota("capped", max_running=1))


def marked(engine: Engine) -> dict[int, bool]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, dispatched_at IS NOT NULL FROM jobs"))
        return {row[0]: row[1] for row in rows}


def test_a_runs_roots_in_a_fair_queue_or_of_a_capped_tenant_wait_for_the_leaders_turn(
    engine: Engine,
) -> None:
    fair_queue_and_cap(engine)
    publisher = RecordingPublisher()
    roots = (RunJobSpec(key="fair", type="noop", queue="shared"), RunJobSpec(key="b", type="noop"))
    _, (fair, plain) = submit_run_now(
        engine, publisher, RunSpec("acme", "p", "two roots", roots, ()), actor="test"
    )
    _, (capped,) = submit_run_now(
        engine,
        publisher,
        RunSpec("capped", "p", "capped", (RunJobSpec(key="x", type="noop"),), ()),
        actor="test",
    )

    assert publisher.sent == [plain.id]
    assert marked(engine) == {fair.id: False, plain.id: True, capped.id: False}
    assert FairFill(engine, publisher, Leading()).run() == [fair.id], "the fill publishes it"


def test_a_retry_of_a_capped_tenants_job_gets_no_message_the_leader_publishes_it_when_due(
    engine: Engine,
) -> None:
    fair_queue_and_cap(engine)
    executor = Executor(engine, lease_ttl_seconds=30, types=registry())
    attempts = Attempts(
        executor, LeaseKeeper(executor.connection, 30, 10), "w1", eta_limit_seconds=3600
    )
    publisher = RecordingPublisher()
    retried = []
    for tenant in ("capped", "acme"):
        with transaction(engine) as conn:
            job, _ = submit(conn, NewJob(type="work", tenant_id=tenant), types=registry())
        claim = executor.claim(job.id, "w1")
        assert claim is not None
        again = executor.record(claim, Retry(error={"code": "BOOM"}, countdown=1, reason="retry"))
        assert again is not None and again.status is JobStatus.SCHEDULED
        attempts.publish_retry(again, 1, publisher)
        retried.append(again.id)

    capped, plain = retried
    assert publisher.sent == [plain]
    assert (marked(engine)[capped], marked(engine)[plain]) == (False, True)
