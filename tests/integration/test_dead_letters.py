"""Dead letters on a real Postgres: written with the final failure, replayed once, discarded,
purged; listing filters and pages in a stable order."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from jobengine import guard
from jobengine.dead_letters import (
    DeadLetterDiscarded,
    DeadLetterNotFound,
    DeadLetters,
    NoHandlerForType,
    ReplayOptions,
    ReplayOutcome,
)
from jobengine.domain.dead_letter import DeadLetterReason, DeadLetterStatus
from jobengine.domain.dead_letter import ReplayOutcome as Outcome
from jobengine.domain.job import Job, NewJob
from jobengine.domain.status import JobStatus
from jobengine.execution import Claim, Executor, describe_error
from jobengine.job_types import JobTypeRegistry, JobTypeSpec
from jobengine.store.database import transaction
from jobengine.store.dead_letter_repository import DeadLetterFilter, DeadLetterRepository
from jobengine.store.jobs_repository import DispatchRef, JobsRepository


class Boom(Exception):
    pass


class NoBroker:
    """The reaper's publisher where no message matters to the test."""

    def publish(self, ref: DispatchRef, countdown: float | None = None) -> None:
        pass

    def publish_chunk(self, refs: Sequence[DispatchRef]) -> None:
        pass


def types() -> JobTypeRegistry:
    reg = JobTypeRegistry()
    reg.register(JobTypeSpec("flaky", retry_policy={"max_retries": 2, "base_delay_seconds": 0}))
    reg.register(JobTypeSpec("other", queue="q2", retry_policy={"max_retries": 0}))
    return reg


def new_job(engine: Engine, job_type: str = "flaky", tenant: str = "t1") -> Job:
    with transaction(engine) as conn:
        job = guard.create_job(
            conn,
            NewJob(
                type=job_type,
                payload={"n": 1},
                tenant_id=tenant,
                queue=types().get(job_type).queue,
            ),
            schedule=True,
        )
    assert job is not None
    return job


def run_and_fail(executor: Executor, job_id: int, exc: Exception) -> Job | None:
    """One attempt that raises, recorded as the worker hooks record it."""
    claim = executor.claim(job_id, "worker-1")
    assert claim is not None
    try:
        raise exc  # as a handler would, so the error has its traceback
    except Exception as raised:
        return executor.record_outcome_of_failure(claim, raised, describe_error(raised))


def fail_for_good(executor: Executor, job_id: int) -> Job:
    while True:
        with transaction(executor.engine) as conn:
            conn.execute(text("UPDATE jobs SET not_before = NULL WHERE id = :id"), {"id": job_id})
        job = run_and_fail(executor, job_id, Boom("still broken"))
        assert job is not None
        if job.status is JobStatus.FAILED:
            return job


@pytest.fixture
def executor(engine: Engine) -> Executor:
    return Executor(engine, lease_ttl_seconds=30, types=types())


@pytest.fixture
def service(engine: Engine) -> DeadLetters:
    return DeadLetters(engine, types=types())


def test_exhausted_job_is_dead_lettered_with_every_attempt_in_its_timeline(
    executor: Executor, service: DeadLetters
) -> None:
    job = fail_for_good(executor, new_job(executor.engine).id)
    assert job.attempt == 3
    dead_letter_id = service.id_for_job(job.id)
    entry = service.get(dead_letter_id)
    assert entry.reason is DeadLetterReason.RETRIES_EXHAUSTED
    assert entry.status is DeadLetterStatus.OPEN
    assert entry.attempts == 3
    assert entry.error_class is not None and entry.error_class.endswith("Boom")
    assert entry.error_message == "still broken"
    assert "Boom" in (entry.traceback or "")
    assert entry.payload == {"n": 1}
    failures = [t for t in entry.timeline if t["to_status"] == "failed"]
    assert [f["attempt"] for f in failures] == [1, 2, 3]
    assert all(f["details"]["error"]["message"] == "still broken" for f in failures)
    assert entry.timeline[0]["to_status"] == "scheduled"
    assert entry.timeline[-1]["to_status"] == "failed"


def test_first_failed_at_is_the_first_attempts_failure_not_the_last(
    executor: Executor, service: DeadLetters
) -> None:
    job = fail_for_good(executor, new_job(executor.engine).id)
    entry = service.get(service.id_for_job(job.id))
    failed_at = [
        datetime.fromisoformat(t["at"]) for t in entry.timeline if t["to_status"] == "failed"
    ]
    assert len(failed_at) == 3
    assert entry.first_failed_at == failed_at[0] < failed_at[-1] <= entry.last_failed_at


def test_listing_total_counts_every_match_and_says_when_it_stopped_counting(
    executor: Executor, service: DeadLetters, engine: Engine
) -> None:
    for _ in range(3):
        run_and_fail(executor, new_job(engine, "other").id, Boom("no"))
    flt = DeadLetterFilter(types=("other",))
    assert service.page(flt, limit=1).items and service.total(flt).exact
    assert service.total(flt).count == 3
    with transaction(engine) as conn:
        capped = DeadLetterRepository(conn).total(flt, cap=2)
    assert (capped.count, capped.exact, capped.label()) == (2, False, "at least 2")


def test_non_retryable_and_poison_errors_name_their_reason(
    executor: Executor, service: DeadLetters
) -> None:
    from jobengine.failures import NonRetryableError, PoisonMessage

    first = new_job(executor.engine)
    second = new_job(executor.engine)
    run_and_fail(executor, first.id, NonRetryableError("bad input"))
    run_and_fail(executor, second.id, PoisonMessage("payload cannot be decoded"))
    assert service.get(service.id_for_job(first.id)).reason is DeadLetterReason.NON_RETRYABLE
    assert service.get(service.id_for_job(second.id)).reason is DeadLetterReason.POISON


def test_replay_runs_one_more_attempt_and_fresh_budget_grants_all_again(
    executor: Executor, service: DeadLetters
) -> None:
    job = fail_for_good(executor, new_job(executor.engine).id)
    entry_id = service.id_for_job(job.id)
    done = service.replay(entry_id, ReplayOptions(actor="ops", reason="cause fixed"))
    assert done.outcome is ReplayOutcome.REPLAYED
    assert service.get(entry_id).status is DeadLetterStatus.REPLAYED
    again = run_and_fail(executor, job.id, Boom("not fixed after all"))
    assert again is not None and again.status is JobStatus.FAILED  # one attempt only
    reopened = service.get(entry_id)
    assert reopened.status is DeadLetterStatus.OPEN
    assert reopened.attempts == 4
    assert [r.outcome for r in reopened.replays] == [Outcome.FAILED_AGAIN]

    service.replay(entry_id, ReplayOptions(actor="ops", fresh_budget=True))
    retried = run_and_fail(executor, job.id, Boom("once more"))
    assert retried is not None and retried.status is JobStatus.SCHEDULED  # budget again
    with transaction(executor.engine) as conn:
        conn.execute(text("UPDATE jobs SET not_before = NULL WHERE id = :id"), {"id": job.id})
    claim = executor.claim(job.id, "worker-1")
    assert claim is not None
    executor.complete(claim, {"ok": True})
    replays = service.get(entry_id).replays
    assert [(r.actor, r.fresh_budget, r.outcome) for r in replays] == [
        ("ops", False, Outcome.FAILED_AGAIN),
        ("ops", True, Outcome.COMPLETED),
    ]
    assert replays[0].reason == "cause fixed"


def test_replay_with_a_payload_patch_merges_it_into_the_job(
    executor: Executor, service: DeadLetters
) -> None:
    job = fail_for_good(executor, new_job(executor.engine).id)
    entry_id = service.id_for_job(job.id)
    service.replay(entry_id, ReplayOptions(actor="ops", payload_patch={"n": 2, "fixed": True}))
    with transaction(executor.engine) as conn:
        stored = JobsRepository(conn).get(job.id)
    assert stored.payload == {"n": 2, "fixed": True}
    assert stored.status is JobStatus.SCHEDULED
    assert service.get(entry_id).payload == {"n": 1}  # the snapshot keeps what failed


def test_two_concurrent_replays_of_one_entry_replay_it_once(
    executor: Executor, service: DeadLetters
) -> None:
    job = fail_for_good(executor, new_job(executor.engine).id)
    entry_id = service.id_for_job(job.id)
    barrier = threading.Barrier(2)
    outcomes: list[ReplayOutcome] = []

    def replay(actor: str) -> None:
        barrier.wait()
        outcomes.append(service.replay(entry_id, ReplayOptions(actor=actor)).outcome)

    threads = [threading.Thread(target=replay, args=(f"ops-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == [ReplayOutcome.ALREADY_REPLAYED, ReplayOutcome.REPLAYED]
    assert len(service.get(entry_id).replays) == 1
    with transaction(executor.engine) as conn:
        replays_in_history = conn.execute(
            text(
                "SELECT count(*) FROM job_history WHERE job_id = :id "
                "AND from_status = 'failed' AND to_status = 'scheduled' AND actor LIKE 'ops-%'"
            ),
            {"id": job.id},
        ).scalar_one()
    assert replays_in_history == 1


def test_replay_of_a_type_without_a_handler_is_refused_and_changes_nothing(
    executor: Executor, engine: Engine
) -> None:
    job = fail_for_good(executor, new_job(engine).id)
    without = DeadLetters(engine, types=JobTypeRegistry())
    entry_id = without.id_for_job(job.id)
    with pytest.raises(NoHandlerForType, match="'flaky' is not in the catalogue"):
        without.replay(entry_id, ReplayOptions(actor="ops"))
    assert without.get(entry_id).status is DeadLetterStatus.OPEN


def test_discard_is_final_and_idempotent_and_unknown_ids_are_named(
    executor: Executor, service: DeadLetters
) -> None:
    job = fail_for_good(executor, new_job(executor.engine).id)
    entry_id = service.id_for_job(job.id)
    assert service.discard(entry_id, actor="ops", reason="obsolete") is True
    assert service.discard(entry_id, actor="ops", reason="obsolete") is False
    entry = service.get(entry_id)
    assert (entry.status, entry.status_changed_by, entry.status_reason) == (
        DeadLetterStatus.DISCARDED,
        "ops",
        "obsolete",
    )
    with pytest.raises(DeadLetterDiscarded):
        service.replay(entry_id, ReplayOptions(actor="ops"))
    with pytest.raises(DeadLetterNotFound, match="dead letter 999999 does not exist"):
        service.replay(999_999, ReplayOptions(actor="ops"))


def test_purge_removes_only_entries_already_dealt_with(
    executor: Executor, service: DeadLetters
) -> None:
    jobs = [fail_for_good(executor, new_job(executor.engine).id) for _ in range(3)]
    ids = [service.id_for_job(j.id) for j in jobs]
    service.replay(ids[0], ReplayOptions(actor="ops"))
    service.discard(ids[1], actor="ops", reason=None)
    assert service.purge(datetime.now(UTC) - timedelta(hours=1)) == 0
    assert service.purge(datetime.now(UTC) + timedelta(seconds=1)) == 2
    page = service.page(DeadLetterFilter(statuses=()))
    assert [e.id for e in page.items] == [ids[2]]


def test_listing_filters_and_pages_in_id_order(executor: Executor, service: DeadLetters) -> None:
    flaky = [fail_for_good(executor, new_job(executor.engine).id) for _ in range(3)]
    other = fail_for_good(executor, new_job(executor.engine, "other", tenant="t2").id)
    first = service.page(DeadLetterFilter(), limit=2)
    rest = service.page(DeadLetterFilter(), after_id=first.next_cursor or 0, limit=2)
    assert [e.job_id for e in first.items + rest.items] == [j.id for j in [*flaky, other]]
    assert rest.next_cursor is None
    assert [e.job_id for e in service.page(DeadLetterFilter(tenant_id="t2")).items] == [other.id]
    assert [e.job_id for e in service.page(DeadLetterFilter(queues=["q2"])).items] == [other.id]
    by_class = service.page(DeadLetterFilter(error_classes=["Boom"])).items
    assert len(by_class) == 4
    none = service.page(DeadLetterFilter(reasons=[DeadLetterReason.POISON])).items
    assert none == []
    counts = {(c.reason, c.type): c.count for c in service.counts()}
    assert counts == {
        (DeadLetterReason.RETRIES_EXHAUSTED, "flaky"): 3,
        (DeadLetterReason.RETRIES_EXHAUSTED, "other"): 1,
    }


def test_bulk_dry_run_lists_exactly_what_a_replay_then_replays(
    executor: Executor, service: DeadLetters
) -> None:
    flaky = [fail_for_good(executor, new_job(executor.engine).id) for _ in range(4)]
    fail_for_good(executor, new_job(executor.engine, "other").id)
    flt = DeadLetterFilter(types=["flaky"])
    dry = service.replay_many(flt, ReplayOptions(actor="ops"), dry_run=True)
    assert [e.job_id for e in dry.selected] == [j.id for j in flaky]
    assert all(service.get(e.id).status is DeadLetterStatus.OPEN for e in dry.selected)
    seen: list[int] = []
    done = service.replay_many(
        flt, ReplayOptions(actor="ops"), on_progress=lambda e, _: seen.append(e.id)
    )
    assert [r.job_id for r in done.replayed] == [j.id for j in flaky]
    assert seen == [e.id for e in dry.selected]
    again = service.replay_many(flt, ReplayOptions(actor="ops"))
    assert again.selected == [] and again.replayed == []


def test_a_chunk_job_handed_back_before_its_handler_ran_gets_its_attempt_back(
    executor: Executor, engine: Engine
) -> None:
    job = new_job(engine)
    [claim] = executor.claim_chunk([job.id], "worker-1")
    assert claim.attempt == 1
    back = executor.give_back(claim, "chunk interrupted")
    assert back is not None and back.attempt == 0 and back.status is JobStatus.SCHEDULED
    again = executor.claim(job.id, "worker-2")
    assert again is not None and again.attempt == 1
    assert again.token > claim.token  # the fence still moved on


def test_lease_lost_with_no_attempts_left_is_dead_lettered_by_the_reaper(
    engine: Engine,
) -> None:
    from jobengine.reaper import Reaper

    executor = Executor(engine, lease_ttl_seconds=-1, types=types())
    job = new_job(engine, "other")
    claim: Claim | None = executor.claim(job.id, "worker-gone")
    assert claim is not None
    Reaper(
        engine,
        NoBroker(),
        executor,
        name="reaper-1",
        redispatch_after_seconds=300,
        dispatch_grace_seconds=2,
    ).tick()
    service = DeadLetters(engine, types=types())
    entry = service.get(service.id_for_job(job.id))
    assert entry.reason is DeadLetterReason.LEASE_EXPIRED
    assert entry.error_code == "LEASE_EXPIRED"
