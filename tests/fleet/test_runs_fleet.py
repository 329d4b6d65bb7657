"""Runs on a real fleet: Celery workers claim, run and complete a run's jobs, and the
transaction that finalizes a parent releases (and publishes) its children."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable

import pytest
from sqlalchemy import text

from jobengine.catalogue import announce
from jobengine.dead_letters import DeadLetters, ReplayOptions
from jobengine.domain.job import Job
from jobengine.domain.run import Run, RunJobSpec, RunSpec, TriggerRule
from jobengine.domain.status import FINAL_STATES, JobStatus, RunStatus
from jobengine.domain.transitions import BIRTH_STATES
from jobengine.fleet import publisher_app
from jobengine.job_types import registry
from jobengine.runs import service
from jobengine.runs.producer import cancel_run_now, submit_run_now
from jobengine.store.database import transaction
from tests.fleet import handlers, runs_handlers  # noqa: F401
from tests.fleet.conftest import Fleet, PrivatePostgres, wait_until

S = JobStatus
HANDLERS = json.dumps(["tests.fleet.handlers", "tests.fleet.runs_handlers"])
DIAMOND = (("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"))


@pytest.fixture
def runs_fleet(fleet: Fleet) -> Fleet:
    announce(fleet.engine, registry.specs(), "tests")  # as the fleet's workers do at start
    return fleet


def start(fleet: Fleet, name: str = "w1", concurrency: int = 1) -> None:
    fleet.start_worker(name, concurrency=concurrency, JOBENGINE_HANDLER_MODULES=HANDLERS)


def job_spec(
    key: str,
    type: str = "run_step",
    payload: dict[str, object] | None = None,
    trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS,
) -> RunJobSpec:
    return RunJobSpec(
        key=key, type=type, payload={"key": key, **(payload or {})}, trigger_rule=trigger_rule
    )


def submit(
    fleet: Fleet, jobs: Iterable[RunJobSpec], edges: tuple[tuple[str, str], ...]
) -> tuple[Run, dict[str, Job]]:
    spec = RunSpec(tenant_id="acme", project_id="etl", name="fleet", jobs=tuple(jobs), edges=edges)
    run, stored = submit_run_now(fleet.engine, fleet.publisher(), spec, actor="test")
    return run, {j.run_key or "": j for j in stored}


def run_now(fleet: Fleet, run_id: int) -> Run:
    with transaction(fleet.engine) as conn:
        return service.get_run(conn, run_id)


def graph_jobs(fleet: Fleet, run_id: int) -> dict[str, Job]:
    with transaction(fleet.engine) as conn:
        return {j.run_key or "": j for j in service.run_graph(conn, run_id).jobs}


def run_settled(fleet: Fleet, run_id: int) -> bool:
    return run_now(fleet, run_id).status is not RunStatus.RUNNING


def assert_history_chains_and_finals_once(fleet: Fleet, run_id: int) -> None:
    """Every job of the run: its history is a gap-free chain from its birth to the final
    state it rests in, and each final state it reached was left again (a retry, a replay)
    but the last: it came to rest exactly once."""
    for job in graph_jobs(fleet, run_id).values():
        rows = fleet.history(job.id)
        assert rows[0].from_status is None and rows[0].to_status in BIRTH_STATES
        for before, after in itertools.pairwise(rows):
            assert after.from_status is before.to_status, (job.run_key, before, after)
        assert rows[-1].to_status is job.status and job.status in FINAL_STATES
        reached = sum(1 for h in rows if h.to_status in FINAL_STATES)
        left = sum(1 for h in rows if h.from_status in FINAL_STATES)
        assert reached - left == 1, (job.run_key, rows)


def test_a_diamond_runs_in_order_on_the_fleet_and_its_last_job_sees_both_results(
    runs_fleet: Fleet,
) -> None:
    start(runs_fleet)
    run, jobs = submit(runs_fleet, [job_spec(k) for k in "abcd"], DIAMOND)
    wait_until(lambda: run_settled(runs_fleet, run.id), 60, "run finished")
    assert run_now(runs_fleet, run.id).status is RunStatus.COMPLETED
    done = graph_jobs(runs_fleet, run.id)
    assert done["d"].result == {
        "key": "d",
        "seen": {"b": done["b"].result, "c": done["c"].result},
    }
    effects = {k: runs_fleet.effects(j.id) for k, j in jobs.items()}
    assert all(len(ran) == 1 for ran in effects.values()), effects
    # In order: each job's completion (history id) comes before its children's start.
    completed = {
        k: next(h.id for h in runs_fleet.history(j.id) if h.to_status is S.COMPLETED)
        for k, j in jobs.items()
    }
    claimed = {
        k: next(h.id for h in runs_fleet.history(j.id) if h.to_status is S.CLAIMED)
        for k, j in jobs.items()
    }
    for parent, child in DIAMOND:
        assert completed[parent] < claimed[child], (parent, child)
    assert_history_chains_and_finals_once(runs_fleet, run.id)


def test_a_failing_b_cancels_d_and_its_replay_runs_b_and_d_but_not_a_or_c(
    runs_fleet: Fleet,
) -> None:
    start(runs_fleet)
    run, jobs = submit(
        runs_fleet,
        [
            job_spec("a"),
            job_spec("b", type="run_flaky", payload={"until": "b-fixed"}),
            job_spec("c"),
            job_spec("d"),
        ],
        DIAMOND,
    )
    wait_until(lambda: run_settled(runs_fleet, run.id), 60, "run failed")
    failed = graph_jobs(runs_fleet, run.id)
    assert run_now(runs_fleet, run.id).status is RunStatus.FAILED
    assert (failed["b"].status, failed["c"].status, failed["d"].status) == (
        S.FAILED,
        S.COMPLETED,
        S.CANCELLED,
    )
    assert runs_fleet.history(jobs["d"].id)[-1].reason == "upstream_failed"

    with runs_fleet.engine.begin() as conn:
        conn.execute(text("INSERT INTO test_flags (name) VALUES ('b-fixed')"))
    letters = DeadLetters(runs_fleet.engine, publisher=runs_fleet.publisher())
    letters.replay(letters.id_for_job(jobs["b"].id), ReplayOptions(actor="ops"))
    wait_until(lambda: run_settled(runs_fleet, run.id), 60, "run resumed and finished")
    assert run_now(runs_fleet, run.id).status is RunStatus.COMPLETED
    ran = {k: len(runs_fleet.effects(j.id)) for k, j in jobs.items()}
    assert ran == {"a": 1, "b": 2, "c": 1, "d": 1}
    assert_history_chains_and_finals_once(runs_fleet, run.id)


def test_an_all_done_child_runs_after_a_failure_and_an_on_failure_one_only_then(
    runs_fleet: Fleet,
) -> None:
    start(runs_fleet)
    run, _ = submit(
        runs_fleet,
        [
            job_spec("work", type="run_flaky", payload={"until": "never"}),
            job_spec("report", trigger_rule=TriggerRule.ALL_DONE),
            job_spec("alert", trigger_rule=TriggerRule.ON_FAILURE),
        ],
        (("work", "report"), ("work", "alert")),
    )
    wait_until(lambda: run_settled(runs_fleet, run.id), 60, "run finished")
    done = graph_jobs(runs_fleet, run.id)
    assert (done["report"].status, done["alert"].status) == (S.COMPLETED, S.COMPLETED)
    assert run_now(runs_fleet, run.id).status is RunStatus.FAILED


def fan(fleet: Fleet, jobs: list[RunJobSpec], edges: list[tuple[str, str]]) -> Run:
    start(fleet, concurrency=2)
    run, _ = submit(fleet, jobs, tuple(edges))
    wait_until(lambda: run_settled(fleet, run.id), 240, "run finished")
    return run_now(fleet, run.id)


def test_a_fan_out_of_1000_completes_through_the_fleet(runs_fleet: Fleet) -> None:
    leaves = [f"leaf-{i}" for i in range(1000)]
    run = fan(
        runs_fleet,
        [job_spec("root", type="noop"), *(job_spec(k, type="noop") for k in leaves)],
        [("root", k) for k in leaves],
    )
    assert (run.status, run.jobs_completed, run.jobs_total) == (RunStatus.COMPLETED, 1001, 1001)
    # Released leaves went out in chunks, published by the worker that completed the root.
    assert "[chunk-" in runs_fleet.log_of("w1")


def test_a_fan_in_of_1000_completes_through_the_fleet_and_the_child_runs_once(
    runs_fleet: Fleet,
) -> None:
    sources = [f"src-{i}" for i in range(1000)]
    run = fan(
        runs_fleet,
        [*(job_spec(k, type="noop") for k in sources), job_spec("sink")],
        [(k, "sink") for k in sources],
    )
    assert (run.status, run.jobs_completed) == (RunStatus.COMPLETED, 1001)
    sink = graph_jobs(runs_fleet, run.id)["sink"]
    assert len(runs_fleet.effects(sink.id)) == 1
    assert sink.result is not None and len(sink.result["seen"]) == 1000
    released = [h.reason or "" for h in runs_fleet.history(sink.id) if h.to_status is S.SCHEDULED]
    assert len(released) == 1 and released[0].startswith("released by parent ")


def test_a_handler_spawning_10_jobs_mid_run_makes_its_children_wait_for_them(
    runs_fleet: Fleet,
) -> None:
    start(runs_fleet, concurrency=2)
    run, jobs = submit(
        runs_fleet,
        [job_spec("fan", type="run_spawner", payload={"n": 10}), job_spec("after")],
        (("fan", "after"),),
    )
    wait_until(lambda: run_settled(runs_fleet, run.id), 60, "run finished")
    finished = run_now(runs_fleet, run.id)
    assert (finished.status, finished.jobs_total, finished.jobs_completed) == (
        RunStatus.COMPLETED,
        12,
        12,
    )
    with transaction(runs_fleet.engine) as conn:
        graph = service.run_graph(conn, run.id)
    by_key = {j.run_key: j for j in graph.jobs}
    spawned = {by_key[f"spawned-{i}"].id for i in range(10)}
    assert set(by_key["fan"].result or []) == spawned
    after = by_key["after"]
    assert {p for p, c in graph.edges if c == after.id} == spawned | {jobs["fan"].id}
    assert after.result is not None
    assert set(after.result["seen"]) == {"fan"} | {f"spawned-{i}" for i in range(10)}
    assert_history_chains_and_finals_once(runs_fleet, run.id)


def test_cancelling_a_run_with_a_running_job_revokes_it_and_leaves_every_job_final(
    runs_fleet: Fleet,
) -> None:
    start(runs_fleet)
    run, jobs = submit(
        runs_fleet,
        [
            RunJobSpec(key="a", type="blocking", payload={"block_attempts": [1]}),
            job_spec("b"),
        ],
        (("a", "b"),),
    )
    wait_until(lambda: runs_fleet.job(jobs["a"].id).status is S.RUNNING, 60, "a running")
    control = publisher_app(runs_fleet.settings(), runs_fleet.broker_url).control
    cancelled, _, revoked = cancel_run_now(
        runs_fleet.engine, run.id, tenant_id="acme", actor="ops", revoker=control
    )
    assert cancelled.status is RunStatus.CANCELLED and cancelled.jobs_cancelled == 2
    assert revoked == [f"job-{jobs['a'].id}-1"]
    wait_until(lambda: "Terminating" in runs_fleet.log_of("w1"), 60, "task terminated")
    assert {j.status for j in graph_jobs(runs_fleet, run.id).values()} == {S.CANCELLED}
    assert runs_fleet.effects(jobs["b"].id) == []
    assert_history_chains_and_finals_once(runs_fleet, run.id)


def test_a_run_survives_a_sigkilled_worker_and_every_job_comes_to_rest_once(
    runs_fleet: Fleet,
) -> None:
    doomed = runs_fleet.start_worker("doomed", JOBENGINE_HANDLER_MODULES=HANDLERS)
    run, jobs = submit(
        runs_fleet,
        [RunJobSpec(key="a", type="blocking", payload={"block_attempts": [1]}), job_spec("b")],
        (("a", "b"),),
    )
    wait_until(lambda: runs_fleet.job(jobs["a"].id).status is S.RUNNING, 60, "a running")
    runs_fleet.kill(doomed)
    runs_fleet.start_reaper("leader")
    start(runs_fleet, "w2")
    wait_until(lambda: run_settled(runs_fleet, run.id), 90, "run finished after the rescue")
    assert run_now(runs_fleet, run.id).status is RunStatus.COMPLETED
    assert runs_fleet.job(jobs["a"].id).attempt == 2
    assert len(runs_fleet.effects(jobs["b"].id)) == 1
    assert_history_chains_and_finals_once(runs_fleet, run.id)


def completed_in(fleet: Fleet, run_id: int) -> int:
    return run_now(fleet, run_id).jobs_completed


def test_a_run_survives_a_postgres_restart_mid_fan_out_with_every_job_at_rest_once(
    private_pg: PrivatePostgres, private_fleet: Fleet
) -> None:
    announce(private_fleet.engine, registry.specs(), "tests")
    private_fleet.start_reaper("leader")
    start(private_fleet, concurrency=2)
    leaves = [f"leaf-{i}" for i in range(60)]
    run, _ = submit(
        private_fleet,
        [
            RunJobSpec(key="root", type="noop"),
            *(RunJobSpec(key=k, type="sleep", payload={"seconds": 0.05}) for k in leaves),
            RunJobSpec(key="sink", type="noop"),
        ],
        tuple([("root", k) for k in leaves] + [(k, "sink") for k in leaves]),
    )
    wait_until(lambda: completed_in(private_fleet, run.id) >= 10, 60, "fan-out under way")
    assert completed_in(private_fleet, run.id) < 62
    private_pg.restart_immediately()
    wait_until(lambda: run_settled(private_fleet, run.id), 180, "run finished after restart")
    finished = run_now(private_fleet, run.id)
    assert (finished.status, finished.jobs_completed) == (RunStatus.COMPLETED, 62)
    assert_history_chains_and_finals_once(private_fleet, run.id)
