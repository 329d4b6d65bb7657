"""High availability of what the engine depends on: a Postgres primary replaced by its
promoted standby, and a Redis master replaced by Sentinel, each mid-run, while the fleet
(workers, a reaper, the API) keeps its one configuration: a URL listing both Postgres
servers, the standby first; a ``sentinel://`` broker URL. Every job still reaches a final
state once, and every role is connected to the new server after.

In ``make test`` a few hundred short jobs; ``make chaos`` runs every variant at full size.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from config.settings import get_settings
from jobengine.embedded import free_loopback_port
from jobengine.maintenance.broker_epoch import EPOCH_KEY
from jobengine.store.database import normalize_url
from tests.chaos import harness
from tests.chaos.conftest import BuildFleet
from tests.chaos.figures import assert_nothing_lost, final_jobs
from tests.chaos.harness import (
    WORKERS,
    ChaosFleet,
    observer_engine,
    run_scenario,
    submit,
    tunable,
)
from tests.chaos.replicas import (
    MASTER_NAME,
    SentinelGroup,
    in_recovery,
    multi_host_url,
    promote,
    replicate_synchronously,
    standby_of,
)
from tests.chaos.servers import ChaosPostgres, engine_connections
from tests.fleet.conftest import wait_until

pytestmark = pytest.mark.chaos

JOBENGINE = str(Path(sys.executable).with_name("jobengine"))
JOBS = int(tunable("FAILOVER_JOBS", 200, 1000))
JOB_MS = int(tunable("FAILOVER_JOB_MS", 50, 250))
UNREPLICATED = int(tunable("UNREPLICATED_JOBS", 40, 200))
"""Jobs published while the Redis replica hears nothing: the promoted replica lacks them."""


STALL_SQL = """
SELECT coalesce(extract(epoch FROM max(gap)), 0) FROM (
    SELECT at - lag(at) OVER (ORDER BY at) AS gap
    FROM (SELECT DISTINCT at FROM job_history WHERE to_status = 'completed') done
) gaps
"""
"""The longest time between two moments at which jobs completed: the pause a failover
causes, as the fleet's output shows it (short jobs on four processes otherwise complete
several times a second)."""


def _jobs(fleet: ChaosFleet) -> list[int]:
    return submit(fleet, JOBS, JOB_MS)


def start_fleet(fleet: ChaosFleet) -> int:
    """The reaper and the API first (their starts do not wait), then ``WORKERS`` workers side
    by side; back once the reaper leads and the API is ready, so the fault meets every role
    connected. The API's port."""
    reapers = {"reaper-1": fleet.start_reaper("reaper-1")}
    api_port = free_loopback_port()
    fleet.spawn("api", [JOBENGINE, "api"], fleet.env(JOBENGINE_API_PORT=str(api_port)))
    names = [f"w{i}" for i in range(1, WORKERS + 1)]
    with ThreadPoolExecutor(len(names)) as pool:
        list(pool.map(fleet.worker, names))
    wait_until(lambda: fleet.leader(reapers), 60, "the reaper leading")
    wait_until(lambda: api_ready(api_port), 60, "the API ready")
    return api_port


def api_ready(port: int) -> bool:
    """``/readyz`` answers 200: the API reaches Postgres and the broker's master."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def api_scrape(port: int) -> bool:
    """``/metrics`` answers 200: read through the API's pool (``/readyz`` asks Postgres on a
    connection of its own, which it closes)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def api_connections(pg: ChaosPostgres) -> int:
    with pg.connect() as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'jobengine-api'"
        ).fetchone()
    return int(row[0]) if row else 0


def report_stall(fleet: ChaosFleet, scenario: str) -> None:
    with fleet.engine.connect() as conn:
        stall = float(conn.execute(text(STALL_SQL)).scalar_one())
    line = {"scenario": scenario, "longest_pause_in_completions_s": round(stall, 2)}
    print(json.dumps(line))
    harness.RESULTS.append(line)


@dataclass
class Flower:
    port: int

    def get(self, path: str) -> Any:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return json.loads(r.read() or b"null")
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None

    def saw_success_after(self, moment: float) -> bool:
        tasks = self.get("/api/tasks") or {}
        return any(
            task.get("state") == "SUCCESS" and (task.get("succeeded") or 0) > moment
            for task in tasks.values()
        )


def start_flower(fleet: ChaosFleet) -> Flower:
    """Flower on the fleet's broker (its API open: a test's own, on loopback), starting."""
    flower = Flower(free_loopback_port())
    argv = [sys.executable, "-m", "celery", "-A", "workers.app", "flower"]
    argv += ["--address=127.0.0.1", f"--port={flower.port}"]
    fleet.spawn("flower", argv, fleet.env(FLOWER_UNAUTHENTICATED_API="true"))
    return flower


@pytest.mark.parametrize(
    "synchronous",
    [
        pytest.param(True, id="synchronous", marks=pytest.mark.chaos_quick),
        pytest.param(False, id="asynchronous"),
    ],
)
def test_a_fleet_on_a_multi_host_url_lands_on_the_primary_and_follows_its_promoted_standby(
    build_fleet: BuildFleet, tmp_path: Path, synchronous: bool
) -> None:
    fleet = build_fleet()
    assert fleet.pg is not None
    primary = fleet.pg
    standby = standby_of(primary, tmp_path / "standby")
    try:
        if synchronous:
            replicate_synchronously(primary)
        fleet.db_url = multi_host_url(standby, primary)  # the standby first, on purpose
        fleet.engine.dispose()
        fleet.engine = observer_engine(normalize_url(fleet.db_url))
        api_port = start_fleet(fleet)
        wait_until(lambda: engine_connections(primary) > 0, 30, "the fleet on the primary")
        assert engine_connections(standby) == 0, "a fleet connection stayed on the standby"

        @contextmanager
        def failover() -> Iterator[None]:
            primary.crash()
            promote(standby)
            yield

        name = "postgres_failover_" + ("sync" if synchronous else "async")
        outcome = run_scenario(fleet, name, failover, jobs=_jobs)
        report_stall(fleet, name)
        assert not in_recovery(standby)
        assert engine_connections(standby) > 0, "the fleet did not reconnect to the new primary"
        wait_until(lambda: api_ready(api_port), 30, "the API ready on the new primary")
        wait_until(lambda: api_scrape(api_port), 30, "the API's pool serving a scrape")
        assert api_connections(standby) > 0
        assert_nothing_lost(outcome)
        if synchronous:  # with asynchronous replication a just-acknowledged submission may go
            assert final_jobs(fleet.engine) == JOBS
    finally:
        fleet.stop_all()
        standby.stop()


@pytest.fixture
def sentinel_fleet(
    build_fleet: BuildFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[ChaosFleet, SentinelGroup]]:
    """A fleet whose broker is reached through three sentinels only (the test process's own
    publisher too)."""
    fleet = build_fleet()
    assert fleet.broker is not None
    group = SentinelGroup(fleet.broker, tmp_path / "sentinels")
    try:
        group.start()
    except AssertionError:
        group.stop()
        raise
    monkeypatch.setitem(harness.CHAOS_ENV, "JOBENGINE_BROKER_SENTINEL_MASTER", MASTER_NAME)
    monkeypatch.setenv("JOBENGINE_BROKER_SENTINEL_MASTER", MASTER_NAME)
    monkeypatch.setenv("JOBENGINE_BROKER_URL", group.url)
    get_settings.cache_clear()
    fleet.broker_url = group.url
    try:
        yield fleet, group
    finally:
        fleet.stop_all()
        group.stop()
        get_settings.cache_clear()


@pytest.mark.chaos_quick
def test_a_killed_redis_master_replaced_by_sentinel_loses_no_job_not_even_unreplicated_ones(
    sentinel_fleet: tuple[ChaosFleet, SentinelGroup],
) -> None:
    fleet, group = sentinel_fleet
    flower = start_flower(fleet)
    api_port = start_fleet(fleet)
    wait_until(lambda: flower.get("/api/workers") is not None, 60, "Flower answering")
    assert fleet.broker is not None
    master = fleet.broker
    extra: list[int] = []
    promoted_at: list[float] = []

    @contextmanager
    def master_killed() -> Iterator[None]:
        # The replica has the leader's epoch key: what recovers the lost messages below is
        # noticing the failover, not noticing an empty broker.
        wait_until(lambda: group.replica.client().exists(EPOCH_KEY), 30, "the epoch replicated")
        group.cut_off_replica()
        extra.extend(submit(fleet, UNREPLICATED, JOB_MS))  # on the master only, then gone with it
        master.kill(keep_data=False)
        group.thaw_replica()
        wait_until(group.failed_over, 60, "the sentinels promoting the replica")
        promoted_at.append(time.time())
        yield

    outcome = run_scenario(fleet, "redis_master_killed", master_killed, jobs=_jobs)
    report_stall(fleet, "redis_master_killed")
    assert_nothing_lost(outcome)
    assert len(extra) == UNREPLICATED
    assert final_jobs(fleet.engine) == JOBS + UNREPLICATED
    assert "broker_failed_over" in fleet.log_of("reaper-1")
    wait_until(lambda: api_ready(api_port), 30, "the API reaching the new master")
    # Flower followed the master too: it saw tasks succeed after the promotion, and its
    # broker view (through the first sentinel) answers.
    wait_until(lambda: flower.saw_success_after(promoted_at[0]), 30, "Flower seeing new tasks")
    assert flower.get("/api/queues/length") is not None


def test_a_sentinel_failover_mid_run_loses_no_job(
    sentinel_fleet: tuple[ChaosFleet, SentinelGroup],
) -> None:
    fleet, group = sentinel_fleet
    start_fleet(fleet)

    @contextmanager
    def failover() -> Iterator[None]:
        group.sentinels[0].client().execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
        wait_until(group.failed_over, 60, "the sentinels promoting the replica")
        yield

    outcome = run_scenario(fleet, "redis_sentinel_failover", failover, jobs=_jobs)
    report_stall(fleet, "redis_sentinel_failover")
    assert_nothing_lost(outcome)
