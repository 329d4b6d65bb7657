"""The engine keeps its promise under faults: every job Postgres accepted reaches a final state
once, its effect ran, and the fleet recovers within 2 x lease TTL + reaper interval (+ slack
and the backlog's own drain time, see ``harness.run_scenario``) of the fault's end.

Each scenario prints one JSON line of figures; ``make chaos`` runs all at full size.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

from tests.chaos.conftest import BuildFleet
from tests.chaos.figures import assert_nothing_lost, final_jobs
from tests.chaos.harness import (
    FAULT_S,
    LEADER_TTL_S,
    REAPER_INTERVAL_S,
    SLACK_S,
    WORKERS,
    ChaosFleet,
    hold,
    run_scenario,
    stopped,
    tunable,
)
from tests.chaos.netns import Partition
from tests.chaos.servers import engine_connections
from tests.fleet.conftest import wait_until

pytestmark = pytest.mark.chaos

KILL_EVERY_S = tunable("KILL_EVERY_S", 3, 3)
REDIS_DOWN_S = tunable("REDIS_DOWN_S", 3, 5)
PG_DOWN_S = tunable("PG_DOWN_S", 3, 5)
TERMINATE_EVERY_S = tunable("TERMINATE_EVERY_S", 2, 2)
MAX_CONNECTIONS = int(tunable("MAX_CONNECTIONS", 40, 40))

Procs = dict[str, subprocess.Popen[bytes]]


def start_fleet(fleet: ChaosFleet, reapers: tuple[str, ...] = ("reaper-1",)) -> tuple[Procs, Procs]:
    """``WORKERS`` workers (started side by side: each takes seconds) and the reapers."""
    names = [f"w{i}" for i in range(1, WORKERS + 1)]
    with ThreadPoolExecutor(len(names)) as pool:
        workers = dict(zip(names, pool.map(fleet.worker, names), strict=True))
    return workers, {name: fleet.start_reaper(name) for name in reapers}


@pytest.mark.chaos_quick
def test_a_storm_of_sigkilled_workers_loses_no_job_and_finalizes_none_twice(
    build_fleet: BuildFleet,
) -> None:
    fleet = build_fleet()
    workers, _ = start_fleet(fleet)

    @contextmanager
    def storm() -> Iterator[None]:
        names, end, i = list(workers), time.monotonic() + FAULT_S, 0
        while time.monotonic() < end:
            hold(KILL_EVERY_S)
            name = names[i % len(names)]
            workers[name] = fleet.restart_worker(name, workers[name])
            i += 1
        yield

    assert_nothing_lost(run_scenario(fleet, "sigkill_storm", storm))


@pytest.mark.parametrize(
    "keep_data",
    [
        pytest.param(True, id="with_data"),
        pytest.param(False, id="without_data", marks=pytest.mark.chaos_quick),
    ],
)
def test_a_killed_and_restarted_redis_loses_no_job_with_or_without_its_data(
    build_fleet: BuildFleet, keep_data: bool
) -> None:
    fleet = build_fleet()
    start_fleet(fleet)
    assert fleet.broker is not None
    broker = fleet.broker

    @contextmanager
    def redis_down() -> Iterator[None]:
        broker.kill(keep_data=keep_data)
        hold(REDIS_DOWN_S)
        broker.start()
        yield

    name = "redis_restart_with_data" if keep_data else "redis_restart_without_data"
    assert_nothing_lost(run_scenario(fleet, name, redis_down))


@pytest.mark.chaos_quick
def test_a_postgres_crash_and_restart_strands_no_job_with_workers_and_reaper_left_alone(
    build_fleet: BuildFleet,
) -> None:
    fleet = build_fleet()
    start_fleet(fleet)
    assert fleet.pg is not None
    pg = fleet.pg

    @contextmanager
    def postgres_down() -> Iterator[None]:
        pg.crash()
        hold(PG_DOWN_S)
        pg.boot()
        yield

    assert_nothing_lost(run_scenario(fleet, "postgres_immediate_restart", postgres_down))


@pytest.mark.chaos_quick
def test_a_storm_of_terminated_backends_strands_no_job(build_fleet: BuildFleet) -> None:
    fleet = build_fleet()
    start_fleet(fleet)
    assert fleet.pg is not None
    pg = fleet.pg

    @contextmanager
    def terminate_storm() -> Iterator[None]:
        end = time.monotonic() + FAULT_S
        while True:
            pg.terminate_engine_backends()
            if time.monotonic() + TERMINATE_EVERY_S > end:
                break
            hold(TERMINATE_EVERY_S)
        yield

    assert_nothing_lost(run_scenario(fleet, "terminate_backend_storm", terminate_storm))


def test_a_fleet_short_of_connection_slots_slows_down_but_never_livelocks(
    build_fleet: BuildFleet,
) -> None:
    fleet = build_fleet(max_connections=MAX_CONNECTIONS)
    start_fleet(fleet)
    assert fleet.pg is not None
    pg = fleet.pg
    progress: dict[str, int] = {}

    @contextmanager
    def exhausted() -> Iterator[None]:
        # The fleet loses its connections and, while it reconnects, someone else takes the
        # slots: it gets back half of what it had.
        had = engine_connections(pg)
        pg.terminate_engine_backends()
        with pg.slots_held(leave_free=max(2, had // 2)) as held:
            before = final_jobs(fleet.engine)
            hold(FAULT_S)
            progress.update(had=had, held=held, before=before, after=final_jobs(fleet.engine))
        yield

    outcome = run_scenario(fleet, "max_connections_exhaustion", exhausted)
    print(json.dumps({"scenario": "max_connections_exhaustion", "slots": progress}))
    assert_nothing_lost(outcome)
    assert (
        progress["after"] > progress["before"] or progress["before"] == outcome.figures["submitted"]
    ), f"no job finished while slots were short: {progress}"


def test_a_frozen_leader_loses_leadership_and_another_reaper_rescues_its_orphans(
    build_fleet: BuildFleet,
) -> None:
    fleet = build_fleet()
    workers, reapers = start_fleet(fleet, reapers=("reaper-a", "reaper-b"))
    leader = wait_until(lambda: fleet.leader(reapers), 60, "a leader")

    @contextmanager
    def frozen_leader() -> Iterator[None]:
        # The fault that matters here is the leader's silence: it ends, as far as the fleet
        # goes, when the leader's TTL has run out; the leader stays stopped until every job is
        # final (or the deadline), so only another reaper can have rescued the orphans.
        with stopped(reapers[leader]):
            frozen_at = time.monotonic()
            workers["w1"] = fleet.restart_worker("w1", workers["w1"])
            hold(max(0.0, frozen_at + LEADER_TTL_S - time.monotonic()))
            yield

    outcome = run_scenario(fleet, "frozen_leader", frozen_leader)
    assert_nothing_lost(outcome)


def test_a_worker_and_a_leader_cut_off_from_postgres_are_replaced_while_the_partition_lasts(
    partition: Partition, build_fleet: BuildFleet
) -> None:
    fleet = build_fleet(
        pg_listen=partition.pg_addr, pg_netns=partition.pg_ns, pg_client=partition.far_addr
    )
    assert fleet.pg is not None and fleet.broker is not None
    # Only the far side speaks TCP to Postgres; everyone else, the test included, uses sockets.
    fleet.db_url, fleet.broker_url = fleet.pg.socket_url, fleet.broker.socket_url
    for name in ("w-cut", "reaper-cut"):
        fleet.netns_of[name] = partition.far_ns
        fleet.url_of[name] = (fleet.pg.url, fleet.broker.socket_url)
    reapers = {"reaper-cut": fleet.start_reaper("reaper-cut")}
    wait_until(lambda: fleet.leader(reapers) == "reaper-cut", 60, "the far reaper leading")
    reapers["reaper-ok"] = fleet.start_reaper("reaper-ok")
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(fleet.worker, ["w-cut", "w1"]))

    @contextmanager
    def cut_off() -> Iterator[None]:
        # As with the frozen leader, the fault ends for the fleet when the cut-off leader's
        # TTL has run out; the partition stays until every job is final (or the deadline).
        partition.partition()
        try:
            hold(LEADER_TTL_S)
            # The replacement this scenario is about: the leader that can still reach
            # Postgres takes over within one interval (and the slack) of the cut-off one's TTL.
            wait_until(
                lambda: fleet.leader(reapers) == "reaper-ok",
                REAPER_INTERVAL_S + SLACK_S,
                "reaper-ok leading while reaper-cut is cut off",
            )
            yield
        finally:
            partition.heal()

    # w-cut stays cut off until every job is final, so this fault never ends before the jobs
    # do: w1 alone (half the fleet) drains the rest, and how long that takes is a figure of
    # the fleet's capacity (reported, with the capacity-scaled estimate as its bound_s), not
    # a recovery "after the fault ends" that the bound could apply to.
    outcome = run_scenario(fleet, "partition_worker_and_leader", cut_off, capacity_left=0.5)
    assert_nothing_lost(outcome, recovery_bounded=False)
