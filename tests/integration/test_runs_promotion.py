"""Runs promoted in the transaction that finalizes a parent: a diamond in order, failures
cascading by trigger rule, a dead letter's replay resuming the run, and refusals that write
nothing. Workers' store calls are the executor's own, on an autocommit connection."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text

from jobengine import guard
from jobengine.dead_letters import DeadLetters, ReplayOptions
from jobengine.domain.dead_letter import DeadLetterReason
from jobengine.domain.job import Job, NewJob
from jobengine.domain.run import Run, RunJobSpec, RunSpec, TriggerRule
from jobengine.domain.status import JobStatus, RunStatus
from jobengine.errors import DuplicateIdempotencyKey, JobEngineError
from jobengine.execution import Claim, Executor
from jobengine.runs import service
from jobengine.runs.errors import (
    DuplicateRunKey,
    EmptyRun,
    RunAlreadyFinal,
    RunCycle,
    SelfEdge,
    UnknownRunKey,
)
from jobengine.store.database import SharedConnection, make_engine, transaction
from jobengine.store.dead_letter_repository import DeadLetterFilter

WORKER = "test-worker"
DIAMOND = (("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"))


@pytest.fixture
def executor(db_url: str) -> Iterator[Executor]:
    worker_engine = make_engine(db_url, pool_size=2)
    yield Executor(worker_engine, lease_ttl_seconds=30, connection=SharedConnection(worker_engine))
    worker_engine.dispose()


def spec_of(
    edges: tuple[tuple[str, str], ...],
    keys: tuple[str, ...] | None = None,
    rules: dict[str, TriggerRule] | None = None,
    **kwargs: Any,
) -> RunSpec:
    names = keys or tuple(dict.fromkeys(k for edge in edges for k in edge))
    return RunSpec(
        tenant_id="acme",
        project_id="etl",
        name="nightly",
        jobs=tuple(
            RunJobSpec(
                key=k,
                type="noop",
                payload={"key": k},
                trigger_rule=(rules or {}).get(k, TriggerRule.ALL_SUCCESS),
            )
            for k in names
        ),
        edges=edges,
        **kwargs,
    )


def submit(engine: Engine, spec: RunSpec) -> tuple[Run, dict[str, Job]]:
    with transaction(engine) as conn:
        run, jobs = service.submit_run(conn, spec, actor="test")
    return run, {job.run_key or "": job for job in jobs}


def statuses(engine: Engine, run_id: int) -> dict[str, JobStatus]:
    with transaction(engine) as conn:
        graph = service.run_graph(conn, run_id)
    return {job.run_key or "": job.status for job in graph.jobs}


def run_of(engine: Engine, run_id: int) -> Run:
    with transaction(engine) as conn:
        return service.get_run(conn, run_id)


def claim(executor: Executor, job: Job) -> Claim:
    claimed = executor.claim(job.id, WORKER)
    assert claimed is not None, f"job {job.run_key} could not be claimed"
    return claimed


def complete(executor: Executor, job: Job, result: Any = None) -> Job:
    done = executor.complete(claim(executor, job), result)
    assert done is not None and done.status is JobStatus.COMPLETED
    return done


def fail(executor: Executor, job: Job) -> Job:
    failed = executor.record_failure(
        claim(executor, job),
        {"code": "BOOM", "class": "Boom", "message": "boom"},
        DeadLetterReason.NON_RETRYABLE,
    )
    assert failed is not None and failed.status is JobStatus.FAILED
    return failed


def history(engine: Engine, job_id: int) -> list[dict[str, Any]]:
    with transaction(engine) as conn:
        rows = conn.execute(
            text(
                "SELECT id, from_status, to_status, reason, details, at FROM job_history"
                " WHERE job_id = :id ORDER BY id"
            ),
            {"id": job_id},
        )
        return [dict(r._mapping) for r in rows]


def row_counts(conn: Connection) -> tuple[int, ...]:
    tables = ("runs", "jobs", "job_edges", "job_history", "job_events")
    return tuple(int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in tables)


# ---- a diamond, in order ------------------------------------------------------------------


def test_a_diamond_starts_with_its_root_scheduled_and_the_rest_pending_waiting_for_parents(
    engine: Engine,
) -> None:
    run, jobs = submit(engine, spec_of(DIAMOND))
    assert run.status is RunStatus.RUNNING and run.jobs_total == 4
    assert statuses(engine, run.id) == {
        "a": JobStatus.SCHEDULED,
        "b": JobStatus.PENDING,
        "c": JobStatus.PENDING,
        "d": JobStatus.PENDING,
    }
    with transaction(engine) as conn:
        rows = conn.execute(text("SELECT run_key, parents_waiting FROM jobs ORDER BY id"))
        waiting = {key: n for key, n in rows}
        graph = service.run_graph(conn, run.id)
    assert waiting == {"a": 0, "b": 1, "c": 1, "d": 2}
    ids = {k: j.id for k, j in jobs.items()}
    assert sorted(graph.edges) == sorted((ids[p], ids[c]) for p, c in DIAMOND)


def test_a_diamond_runs_in_order_and_its_last_job_sees_both_parents_results(
    engine: Engine, executor: Executor
) -> None:
    run, jobs = submit(engine, spec_of(DIAMOND))
    complete(executor, jobs["a"], {"rows": 3})
    assert statuses(engine, run.id)["b"] is JobStatus.SCHEDULED
    assert statuses(engine, run.id)["c"] is JobStatus.SCHEDULED
    assert statuses(engine, run.id)["d"] is JobStatus.PENDING
    complete(executor, jobs["b"], "from b")
    assert statuses(engine, run.id)["d"] is JobStatus.PENDING
    complete(executor, jobs["c"], "from c")
    assert statuses(engine, run.id)["d"] is JobStatus.SCHEDULED
    with transaction(engine) as conn:
        assert service.parent_results(conn, jobs["d"].id) == {"b": "from b", "c": "from c"}
    complete(executor, jobs["d"])
    finished = run_of(engine, run.id)
    assert finished.status is RunStatus.COMPLETED and finished.jobs_completed == 4
    assert finished.completed_at is not None
    released = [h for h in history(engine, jobs["d"].id) if h["to_status"] == "scheduled"]
    assert len(released) == 1
    assert released[0]["reason"] == f"released by parent {jobs['c'].id} (c)"
    assert released[0]["details"] == {"parent_id": jobs["c"].id, "parent_key": "c"}
    # In order: each job's release comes after its parents' completion.
    done_at = {
        k: next(h for h in history(engine, j.id) if h["to_status"] == "completed")["id"]
        for k, j in jobs.items()
    }
    assert done_at["a"] < done_at["b"] < done_at["d"] and done_at["a"] < done_at["c"] < done_at["d"]


def test_each_child_counts_the_parents_it_still_waits_for_whether_released_or_waiting(
    engine: Engine, executor: Executor
) -> None:
    """A released child's count is written by its move to ``scheduled``, a waiting one's by
    the count-off: both must say what the child still waits for."""
    run, jobs = submit(engine, spec_of(DIAMOND))

    def waiting() -> dict[str, tuple[int, int]]:
        with transaction(engine) as conn:
            rows = conn.execute(
                text("SELECT run_key, parents_waiting, parents_failed FROM jobs WHERE run_id = :r"),
                {"r": run.id},
            )
            return {key: (w, f) for key, w, f in rows}

    complete(executor, jobs["a"])
    assert waiting() == {"a": (0, 0), "b": (0, 0), "c": (0, 0), "d": (2, 0)}
    complete(executor, jobs["b"])
    assert waiting()["d"] == (1, 0)
    complete(executor, jobs["c"])
    assert waiting()["d"] == (0, 0)
    assert statuses(engine, run.id)["d"] is JobStatus.SCHEDULED


# ---- failures, by trigger rule --------------------------------------------------------------


def test_a_workers_batch_finishes_leaves_and_parents_alike_and_counts_each_in_its_run(
    engine: Engine, executor: Executor
) -> None:
    run, jobs = submit(engine, spec_of(DIAMOND))
    with transaction(engine) as conn:
        [flat] = guard.create_jobs(conn, [NewJob(type="noop", tenant_id="acme")])
    complete(executor, jobs["a"])
    parents = executor.complete_many(
        [(claim(executor, jobs["b"]), "b"), (claim(executor, jobs["c"]), "c")]
    )
    assert [job.status if job else None for job in parents.values()] == [JobStatus.COMPLETED] * 2
    assert statuses(engine, run.id)["d"] is JobStatus.SCHEDULED
    assert (run_of(engine, run.id).jobs_completed, run_of(engine, run.id).status) == (
        3,
        RunStatus.RUNNING,
    )
    leaf_and_flat = executor.complete_many(
        [(claim(executor, jobs["d"]), "d"), (claim(executor, flat), "flat")]
    )
    assert [job.status if job else None for job in leaf_and_flat.values()] == [
        JobStatus.COMPLETED
    ] * 2
    finished = run_of(engine, run.id)
    assert (finished.status, finished.jobs_completed, finished.jobs_total) == (
        RunStatus.COMPLETED,
        4,
        4,
    )
    assert finished.completed_at is not None
    assert [h["to_status"] for h in history(engine, jobs["d"].id)] == [
        "pending",
        "scheduled",
        "claimed",
        "running",
        "completed",
    ]


def test_a_failing_b_cancels_d_as_upstream_failed_while_c_still_completes(
    engine: Engine, executor: Executor
) -> None:
    run, jobs = submit(engine, spec_of(DIAMOND))
    complete(executor, jobs["a"])
    fail(executor, jobs["b"])
    assert statuses(engine, run.id)["d"] is JobStatus.CANCELLED
    cancelled = history(engine, jobs["d"].id)[-1]
    assert (cancelled["from_status"], cancelled["reason"]) == ("pending", "upstream_failed")
    assert cancelled["details"] == {"parent_id": jobs["b"].id, "parent_key": "b"}
    assert run_of(engine, run.id).status is RunStatus.RUNNING
    complete(executor, jobs["c"])
    finished = run_of(engine, run.id)
    assert finished.status is RunStatus.FAILED
    assert (finished.jobs_completed, finished.jobs_failed, finished.jobs_cancelled) == (2, 1, 1)


def test_a_cancellation_cascades_through_every_generation_in_the_same_transaction(
    engine: Engine, executor: Executor
) -> None:
    chain = (("a", "b"), ("b", "c"), ("c", "d"), ("d", "e"))
    run, jobs = submit(engine, spec_of(chain))
    fail(executor, jobs["a"])
    reasons = {k: history(engine, jobs[k].id)[-1]["reason"] for k in "bcde"}
    assert reasons == {
        "b": "upstream_failed",
        "c": "upstream_cancelled",
        "d": "upstream_cancelled",
        "e": "upstream_cancelled",
    }
    finished = run_of(engine, run.id)
    assert finished.status is RunStatus.FAILED and finished.jobs_cancelled == 4


def test_an_all_done_child_runs_after_a_parent_failed(engine: Engine, executor: Executor) -> None:
    run, jobs = submit(engine, spec_of(DIAMOND, rules={"d": TriggerRule.ALL_DONE}))
    complete(executor, jobs["a"])
    fail(executor, jobs["b"])
    assert statuses(engine, run.id)["d"] is JobStatus.PENDING
    complete(executor, jobs["c"])
    assert statuses(engine, run.id)["d"] is JobStatus.SCHEDULED
    complete(executor, jobs["d"])
    assert run_of(engine, run.id).status is RunStatus.FAILED


def test_an_on_failure_child_runs_only_when_a_parent_failed(
    engine: Engine, executor: Executor
) -> None:
    edges = (("work", "cleanup"),)
    rules = {"cleanup": TriggerRule.ON_FAILURE}
    failed_run, failed_jobs = submit(engine, spec_of(edges, rules=rules))
    fail(executor, failed_jobs["work"])
    assert statuses(engine, failed_run.id)["cleanup"] is JobStatus.SCHEDULED
    ok_run, ok_jobs = submit(engine, spec_of(edges, rules=rules))
    complete(executor, ok_jobs["work"])
    assert statuses(engine, ok_run.id)["cleanup"] is JobStatus.CANCELLED
    assert history(engine, ok_jobs["cleanup"].id)[-1]["reason"] == "upstream_succeeded"
    assert run_of(engine, ok_run.id).status is RunStatus.COMPLETED


# ---- retry from the failed step -------------------------------------------------------------


def test_replaying_b_runs_b_and_d_again_and_not_a_or_c(engine: Engine, executor: Executor) -> None:
    run, jobs = submit(engine, spec_of(DIAMOND))
    complete(executor, jobs["a"], "a")
    fail(executor, jobs["b"])
    complete(executor, jobs["c"], "c")
    assert run_of(engine, run.id).status is RunStatus.FAILED
    letters = DeadLetters(engine)
    replay = letters.replay(letters.id_for_job(jobs["b"].id), ReplayOptions(actor="ops"))
    assert replay.replay_id is not None
    assert statuses(engine, run.id) == {
        "a": JobStatus.COMPLETED,
        "b": JobStatus.SCHEDULED,
        "c": JobStatus.COMPLETED,
        "d": JobStatus.PENDING,
    }
    back = history(engine, jobs["d"].id)[-1]
    assert (back["from_status"], back["to_status"]) == ("cancelled", "pending")
    assert back["reason"] == f"upstream job {jobs['b'].id} (b) was replayed"
    reopened = run_of(engine, run.id)
    assert reopened.status is RunStatus.RUNNING and reopened.completed_at is None
    assert (reopened.jobs_completed, reopened.jobs_failed, reopened.jobs_cancelled) == (2, 0, 0)
    with transaction(engine) as conn:
        rows = conn.execute(
            text("SELECT parents_waiting, parents_failed FROM jobs WHERE id = :id"),
            {"id": jobs["d"].id},
        )
        assert tuple(rows.one()) == (1, 0)
    complete(executor, jobs["b"], "b again")
    complete(executor, jobs["d"])
    finished = run_of(engine, run.id)
    assert finished.status is RunStatus.COMPLETED and finished.jobs_completed == 4
    for key in "ac":
        completions = [h for h in history(engine, jobs[key].id) if h["to_status"] == "completed"]
        assert len(completions) == 1


def test_a_bulk_replay_resumes_every_run_it_touches_from_its_failed_step(
    engine: Engine, executor: Executor
) -> None:
    chain = (("a", "b"), ("b", "c"))
    first, first_jobs = submit(engine, spec_of(chain))
    second, second_jobs = submit(engine, spec_of(chain))
    complete(executor, first_jobs["a"])
    fail(executor, first_jobs["b"])
    fail(executor, second_jobs["a"])
    report = DeadLetters(engine).replay_many(
        DeadLetterFilter(tenant_id="acme"), ReplayOptions(actor="ops")
    )
    assert len(report.replayed) == 2
    assert statuses(engine, first.id) == {
        "a": JobStatus.COMPLETED,
        "b": JobStatus.SCHEDULED,
        "c": JobStatus.PENDING,
    }
    assert statuses(engine, second.id) == {
        "a": JobStatus.SCHEDULED,
        "b": JobStatus.PENDING,
        "c": JobStatus.PENDING,
    }
    assert {run_of(engine, r.id).status for r in (first, second)} == {RunStatus.RUNNING}


def test_replaying_one_of_two_failed_parents_leaves_their_child_cancelled(
    engine: Engine, executor: Executor
) -> None:
    run, jobs = submit(engine, spec_of(DIAMOND))
    complete(executor, jobs["a"])
    fail(executor, jobs["b"])
    fail(executor, jobs["c"])
    letters = DeadLetters(engine)
    letters.replay(letters.id_for_job(jobs["c"].id), ReplayOptions(actor="ops"))
    assert statuses(engine, run.id)["d"] is JobStatus.CANCELLED


# ---- refusals write nothing -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "error", "named"),
    [
        (spec_of((("a", "b"), ("b", "c"), ("c", "a"))), RunCycle, "a -> b -> c -> a"),
        (spec_of((("a", "ghost"),), keys=("a",)), UnknownRunKey, "'ghost'"),
        (spec_of((), keys=("a", "a")), DuplicateRunKey, "'a'"),
        (spec_of((("a", "a"),), keys=("a",)), SelfEdge, "'a'"),
        (spec_of((), keys=()), EmptyRun, "'nightly'"),
    ],
)
def test_a_run_the_planner_refuses_writes_no_row_and_names_the_culprit(
    engine: Engine, spec: RunSpec, error: type[JobEngineError], named: str
) -> None:
    with transaction(engine) as conn:
        before = row_counts(conn)
        with pytest.raises(error) as refused:
            service.submit_run(conn, spec, actor="test")
        assert row_counts(conn) == before == (0, 0, 0, 0, 0)
    assert named in refused.value.message
    assert refused.value.code and refused.value.hint


def test_a_run_with_an_invalid_job_writes_no_row(engine: Engine) -> None:
    spec = RunSpec(
        tenant_id="acme",
        project_id="etl",
        name="bad",
        jobs=(RunJobSpec(key="a", type="noop"), RunJobSpec(key="b", type="no_such_type")),
        edges=(("a", "b"),),
    )
    with transaction(engine) as conn:
        with pytest.raises(JobEngineError) as refused:
            service.submit_run(conn, spec, actor="test")
        assert row_counts(conn) == (0, 0, 0, 0, 0)
    assert refused.value.code == "UNKNOWN_JOB_TYPE"


def test_an_idempotency_key_returns_the_same_run_and_refuses_a_different_request(
    engine: Engine,
) -> None:
    first, first_jobs = submit(engine, spec_of(DIAMOND, idempotency_key="k1"))
    again, again_jobs = submit(engine, spec_of(DIAMOND, idempotency_key="k1"))
    assert again.id == first.id
    assert {k: j.id for k, j in again_jobs.items()} == {k: j.id for k, j in first_jobs.items()}
    with pytest.raises(DuplicateIdempotencyKey):
        submit(engine, spec_of(DIAMOND[:2], idempotency_key="k1"))
    with transaction(engine) as conn:
        assert row_counts(conn)[:3] == (1, 4, 4)


# ---- cancelling a run -----------------------------------------------------------------------


def test_cancelling_a_run_cancels_every_job_not_final_and_names_the_running_one(
    engine: Engine, executor: Executor
) -> None:
    run, jobs = submit(engine, spec_of(DIAMOND))
    complete(executor, jobs["a"])
    running = claim(executor, jobs["b"])
    with transaction(engine) as conn:
        cancelled_run, cancelled = service.cancel_run(
            conn, run.id, tenant_id="acme", actor="ops", reason=None
        )
    assert cancelled_run.status is RunStatus.CANCELLED
    assert {j.run_key for j in cancelled} == {"b", "c", "d"}
    assert [j.id for j in service.revocable(cancelled)] == [running.job_id]
    assert set(statuses(engine, run.id).values()) == {JobStatus.COMPLETED, JobStatus.CANCELLED}
    assert executor.complete(running, None) is None  # the fence refuses the late outcome
    with transaction(engine) as conn, pytest.raises(RunAlreadyFinal):
        service.cancel_run(conn, run.id, tenant_id="acme", actor="ops", reason=None)
    with transaction(engine) as conn, pytest.raises(JobEngineError) as other:
        service.cancel_run(conn, run.id, tenant_id="other", actor="ops", reason=None)
    assert other.value.code == "RUN_NOT_FOUND"
