"""A run keeps the engine's promise under faults: a diamond (A → B, A → C, B + C → D) whose D
fans out to a few hundred children survives SIGKILLed workers and a Postgres crash, every job
reaching its final state once with its effect run, and the run ends ``completed`` with its
counters matching its jobs.

Promotion happens in the transaction that finalizes a parent, so a fault can only lose it by
losing that transaction, which the parent's own retry then repeats; these scenarios check it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import text

from jobengine.domain.run import RunJobSpec, RunSpec
from jobengine.domain.status import JobStatus
from jobengine.runs import service
from jobengine.runs.producer import submit_run_now
from jobengine.store.database import transaction
from tests.chaos.conftest import BuildFleet
from tests.chaos.figures import Outcome, assert_nothing_lost
from tests.chaos.harness import FAULT_S, JOB_MS, ChaosFleet, hold, run_scenario, tunable
from tests.chaos.test_scenarios import KILL_EVERY_S, PG_DOWN_S, start_fleet

pytestmark = pytest.mark.chaos

FAN_OUT = int(tunable("RUN_FAN_OUT", 200, 500))
RUN_ID_SQL = "SELECT DISTINCT run_id FROM jobs"


def diamond_with_fan_out(fan_out: int) -> RunSpec:
    keys = ["A", "B", "C", "D", *(f"f{i}" for i in range(fan_out))]
    jobs = tuple(
        RunJobSpec(key=key, type="chaos_effect", payload={"ms": JOB_MS, "n": n})
        for n, key in enumerate(keys)
    )
    edges = (("A", "B"), ("A", "C"), ("B", "D"), ("C", "D"), *(("D", k) for k in keys[4:]))
    return RunSpec("chaos", "chaos", "diamond-fan-out", jobs, edges)


def submit_run(fleet: ChaosFleet) -> list[int]:
    """The run in one transaction, its root published after the commit; every job's id."""
    spec = diamond_with_fan_out(FAN_OUT)
    _, jobs = submit_run_now(fleet.engine, fleet.publisher(), spec, actor="chaos")
    return [job.id for job in jobs]


def assert_run_completed(fleet: ChaosFleet, outcome: Outcome) -> None:
    assert_nothing_lost(outcome)
    with fleet.engine.connect() as conn:
        run_id: int = conn.execute(text(RUN_ID_SQL)).scalar_one()
    with transaction(fleet.engine) as conn:
        graph = service.run_graph(conn, run_id)
    run = graph.run
    assert {job.status for job in graph.jobs} == {JobStatus.COMPLETED}, outcome.evidence
    assert (run.status.value, run.jobs_completed, run.jobs_failed, run.jobs_cancelled) == (
        "completed",
        run.jobs_total,
        0,
        0,
    ), run
    assert run.jobs_total == FAN_OUT + 4 == outcome.figures["submitted"]


@pytest.mark.chaos_quick
def test_a_run_survives_a_sigkilled_worker_and_a_postgres_crash_mid_fan_out(
    build_fleet: BuildFleet,
) -> None:
    fleet = build_fleet()
    workers, _ = start_fleet(fleet)
    assert fleet.pg is not None
    pg = fleet.pg

    @contextmanager
    def worker_killed_then_postgres_down() -> Iterator[None]:
        workers["w1"] = fleet.restart_worker("w1", workers["w1"])
        pg.crash()
        hold(PG_DOWN_S)
        pg.boot()
        yield

    outcome = run_scenario(
        fleet, "run_sigkill_and_postgres_crash", worker_killed_then_postgres_down, jobs=submit_run
    )
    assert_run_completed(fleet, outcome)


def test_a_run_survives_a_storm_of_sigkilled_workers_with_a_postgres_crash_in_it(
    build_fleet: BuildFleet,
) -> None:
    fleet = build_fleet()
    workers, _ = start_fleet(fleet)
    assert fleet.pg is not None
    pg = fleet.pg

    @contextmanager
    def storm_with_postgres_down() -> Iterator[None]:
        names, end, i = list(workers), time.monotonic() + FAULT_S, 0
        while time.monotonic() < end:
            hold(KILL_EVERY_S)
            name = names[i % len(names)]
            workers[name] = fleet.restart_worker(name, workers[name])
            if i == 1:
                pg.crash()
                hold(PG_DOWN_S)
                pg.boot()
            i += 1
        yield

    outcome = run_scenario(
        fleet, "run_sigkill_storm_and_postgres_crash", storm_with_postgres_down, jobs=submit_run
    )
    assert_run_completed(fleet, outcome)
