"""Runs under concurrent completers, spawns under their fences, and the leader's promoter
against a run's waiting children."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from jobengine import guard
from jobengine.domain.job import Job, NewJob
from jobengine.domain.run import RunJobSpec, RunSpec
from jobengine.domain.status import JobStatus, RunStatus
from jobengine.errors import StaleLease
from jobengine.execution import Executor
from jobengine.guard import Step
from jobengine.runs import service
from jobengine.runs.errors import DuplicateRunKey, SpawnRefused
from jobengine.store.database import SharedConnection, make_engine, transaction
from jobengine.store.maintenance_repository import MaintenanceRepository
from jobengine.submission import submit
from tests.integration.test_runs_promotion import (
    claim,
    complete,
    run_of,
    spec_of,
    statuses,
)
from tests.integration.test_runs_promotion import submit as submit_run

WORKERS = 4


def executors(db_url: str, n: int) -> list[Executor]:
    made = []
    for _ in range(n):
        eng = make_engine(db_url, pool_size=2)
        made.append(Executor(eng, lease_ttl_seconds=30, connection=SharedConnection(eng)))
    return made


def test_concurrent_batched_completers_count_every_parent_once_and_never_deadlock(
    engine: Engine, db_url: str
) -> None:
    """Two sinks share 400 parents; four completers finish them in interleaved batches, each
    batch locking both sinks (in id order), and the run's counts lose no completion."""
    sources = [f"s{i}" for i in range(400)]
    edges = tuple((s, sink) for s in sources for sink in ("sink1", "sink2"))
    run, jobs = submit_run(engine, spec_of(edges, keys=(*sources, "sink1", "sink2")))
    pool = executors(db_url, WORKERS)
    claims = [
        [claim(pool[n % WORKERS], jobs[s]) for s in sources[n::WORKERS]] for n in range(WORKERS)
    ]

    def finish(n: int) -> int:
        mine = claims[n]
        done = 0
        for start in range(0, len(mine), 10):
            written = pool[n].complete_many([(c, None) for c in mine[start : start + 10]])
            done += sum(1 for job in written.values() if job is not None)
        return done

    with ThreadPoolExecutor(WORKERS) as threads:
        assert sum(threads.map(finish, range(WORKERS))) == 400
    assert statuses(engine, run.id)["sink1"] is JobStatus.SCHEDULED
    assert statuses(engine, run.id)["sink2"] is JobStatus.SCHEDULED
    counted = run_of(engine, run.id)
    assert (counted.jobs_completed, counted.status) == (400, RunStatus.RUNNING)
    for sink in ("sink1", "sink2"):
        released = [r for r in _history(engine, jobs[sink].id) if r == ("pending", "scheduled")]
        assert len(released) == 1
    for ex in pool:
        ex.engine.dispose()


def _history(engine: Engine, job_id: int) -> list[tuple[str | None, str]]:
    with transaction(engine) as conn:
        rows = conn.execute(
            text("SELECT from_status, to_status FROM job_history WHERE job_id = :j ORDER BY id"),
            {"j": job_id},
        )
        return [(r.from_status, r.to_status) for r in rows]


# ---- spawns ---------------------------------------------------------------------------------


@pytest.fixture
def executor(db_url: str) -> Executor:
    (made,) = executors(db_url, 1)
    return made


def test_a_spawned_job_is_scheduled_at_once_and_its_spawners_children_wait_for_it_too(
    engine: Engine, executor: Executor
) -> None:
    run, jobs = submit_run(engine, spec_of((("fan", "after"),)))
    held = claim(executor, jobs["fan"])
    spawned_id = executor.spawn(held, RunJobSpec(key="extra", type="noop"))
    assert statuses(engine, run.id)["extra"] is JobStatus.SCHEDULED
    assert run_of(engine, run.id).jobs_total == 3
    again = executor.spawn(held, RunJobSpec(key="extra", type="noop"))
    assert again == spawned_id and run_of(engine, run.id).jobs_total == 3
    with pytest.raises(DuplicateRunKey):
        executor.spawn(held, RunJobSpec(key="after", type="noop"))
    first = _history(engine, spawned_id)
    assert first == [(None, "scheduled")]
    executor.complete(held, None)
    assert statuses(engine, run.id)["after"] is JobStatus.PENDING  # still waits for "extra"
    with transaction(engine) as conn:
        extra = service.run_graph(conn, run.id).jobs[-1]
    complete(executor, extra)
    assert statuses(engine, run.id)["after"] is JobStatus.SCHEDULED


def test_a_spawn_with_a_stale_lease_or_outside_a_run_is_refused_and_writes_nothing(
    engine: Engine, executor: Executor
) -> None:
    run, jobs = submit_run(engine, spec_of((("fan", "after"),)))
    held = claim(executor, jobs["fan"])
    with transaction(engine) as conn:  # the lease is taken over: a new token
        guard.transition(conn, held.job_id, Step(JobStatus.SCHEDULED, "test"), actor="t")
    with pytest.raises(StaleLease):
        executor.spawn(held, RunJobSpec(key="late", type="noop"))
    with transaction(engine) as conn:
        alone, _ = submit(conn, NewJob(type="noop"))
    lone = claim(executor, alone)
    with pytest.raises(SpawnRefused) as refused:
        executor.spawn(lone, RunJobSpec(key="child", type="noop"))
    assert "not part of a run" in refused.value.message and "run" in refused.value.hint
    assert run_of(engine, run.id).jobs_total == 2
    with transaction(engine) as conn:
        assert conn.execute(text("SELECT count(*) FROM jobs")).scalar_one() == 3


# ---- the leader's promoter ------------------------------------------------------------------


def timed_run(engine: Engine, not_before: datetime) -> dict[str, Job]:
    spec = RunSpec(
        tenant_id="acme",
        project_id="etl",
        name="timed",
        jobs=(
            RunJobSpec(key="a", type="noop"),
            RunJobSpec(key="b", type="noop", not_before=not_before),
        ),
        edges=(("a", "b"),),
    )
    return submit_run(engine, spec)[1]


def due(engine: Engine) -> list[int]:
    with transaction(engine) as conn:
        return MaintenanceRepository(conn).due_pending(0, 100)


def test_the_promoter_never_takes_a_child_still_waiting_for_a_parent(
    engine: Engine, executor: Executor
) -> None:
    jobs = timed_run(engine, datetime.now(UTC) - timedelta(minutes=1))
    assert jobs["b"].id not in due(engine)
    complete(executor, jobs["a"])  # due already: released at once by its parent
    assert _history(engine, jobs["b"].id)[-1] == ("pending", "scheduled")


def test_a_released_child_waits_for_its_not_before_and_the_promoter_takes_it_when_due(
    engine: Engine, executor: Executor
) -> None:
    jobs = timed_run(engine, datetime.now(UTC) + timedelta(hours=1))
    complete(executor, jobs["a"])
    assert _history(engine, jobs["b"].id) == [(None, "pending")]  # its birth, nothing since
    assert jobs["b"].id not in due(engine)
    with transaction(engine) as conn:  # its time comes
        conn.execute(
            text("UPDATE jobs SET not_before = now() - interval '1 second' WHERE id = :j"),
            {"j": jobs["b"].id},
        )
    assert due(engine) == [jobs["b"].id]
