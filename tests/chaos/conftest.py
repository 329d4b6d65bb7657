"""Fixtures of the chaos suite: each scenario builds its own servers and fleet, so a fault it
injects reaches nothing outside it. Without ``CHAOS_FULL=1`` (``make chaos`` sets it) only the
scenarios marked ``chaos_quick`` run, at their small sizes; the others are skipped."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _pytest.terminal import TerminalReporter

from jobengine.embedded import free_loopback_port
from tests.chaos.harness import FULL, RESULTS, ChaosFleet, observer_engine
from tests.chaos.netns import Partition, unavailable
from tests.chaos.servers import ChaosPostgres, ChaosRedis

BuildFleet = Callable[..., ChaosFleet]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if FULL:
        return
    skip = pytest.mark.skip(reason="full chaos scenario: run `make chaos` (sets CHAOS_FULL=1)")
    for item in items:
        if item.get_closest_marker("chaos") and not item.get_closest_marker("chaos_quick"):
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    if RESULTS:
        terminalreporter.section("chaos figures")
        for line in RESULTS:
            terminalreporter.write_line(json.dumps(line))


@pytest.fixture
def build_fleet(tmp_path: Path) -> Iterator[BuildFleet]:
    """Call it once per test: private Postgres (migrated) and Redis, no processes yet."""
    fleets: list[ChaosFleet] = []

    def build(
        *,
        max_connections: int = 300,
        pg_listen: str = "127.0.0.1",
        pg_netns: str | None = None,
        pg_client: str | None = None,
    ) -> ChaosFleet:
        pg = ChaosPostgres(tmp_path / "pg", max_connections, pg_listen, pg_netns, pg_client)
        pg.start()
        broker = ChaosRedis(tmp_path / "redis", port=free_loopback_port())
        broker.start()
        logs = tmp_path / "logs"
        logs.mkdir()
        fleet = ChaosFleet(
            db_url=pg.url,
            broker_url=broker.url,
            logs=logs,
            engine=observer_engine(pg.socket_url),
            ledger=tmp_path / "ledger",
            pg=pg,
            broker=broker,
        )
        fleets.append(fleet)
        return fleet

    yield build
    for fleet in fleets:
        fleet.stop_all()
        fleet.engine.dispose()


@pytest.fixture
def partition() -> Iterator[Partition]:
    """Two namespaces of this test's own, for a fleet to be cut off from Postgres; request it
    before ``build_fleet`` so the servers inside are stopped before the namespaces go."""
    reason = unavailable()
    if reason is not None:
        pytest.skip(f"no network partition on this machine: {reason}")
    net = Partition(tag=str(os.getpid() % 100_000), subnet=os.getpid() % 200 + 20)
    net.create()
    yield net
    net.delete()
