"""A rolling restart under load, at full size (``make chaos``): every worker in turn gets
SIGTERM, drains within its shutdown bound and is replaced, round after round, while jobs
shorter and longer than the bound run. Nothing is lost or finalized twice, and no attempt is
spent: the long jobs are handed back, never left for their leases to expire."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import text

from jobengine.domain.job import NewJob
from jobengine.producer import submit_jobs
from tests.chaos.conftest import BuildFleet
from tests.chaos.figures import assert_nothing_lost
from tests.chaos.harness import (
    CONCURRENCY,
    FAULT_S,
    JOB_MS,
    JOBS,
    WORKERS,
    ChaosFleet,
    run_scenario,
    tunable,
)

pytestmark = pytest.mark.chaos

GRACE_S = tunable("SHUTDOWN_GRACE_S", 1, 2)
LONG_MS = int(tunable("LONG_JOB_MS", 4000, 6000))
"""Longer than the bound: a worker stopped while it runs one hands it back."""
LONG_SHARE = 20
"""One job in this many is long."""
EXIT_MARGIN_S = 8.0


def start(fleet: ChaosFleet, name: str) -> subprocess.Popen[bytes]:
    return fleet.start_worker(
        name, concurrency=CONCURRENCY, JOBENGINE_SHUTDOWN_GRACE_SECONDS=str(GRACE_S)
    )


def replace(fleet: ChaosFleet, name: str, proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
    """SIGTERM to the main process, as an orchestrator sends it; the worker must be gone within
    its bound plus a margin, then a new one starts under the same name."""
    began = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(GRACE_S + 60)
    took = time.monotonic() - began
    assert took < GRACE_S + EXIT_MARGIN_S, f"{name} took {took:.1f}s to stop"
    fleet.procs.remove(proc)
    (fleet.logs / f"{name}.log").rename(fleet.logs / f"{name}.{time.monotonic_ns()}.log")
    return start(fleet, name)


def mixed_jobs(fleet: ChaosFleet) -> list[int]:
    publisher = fleet.publisher()
    jobs = [
        NewJob(type="chaos_effect", payload={"ms": LONG_MS if i % LONG_SHARE == 0 else JOB_MS})
        for i in range(JOBS)
    ]
    ids: list[int] = []
    for start_at in range(0, len(jobs), 50):
        ids += [j.id for j in submit_jobs(fleet.engine, publisher, jobs[start_at : start_at + 50])]
    return ids


def test_a_rolling_restart_under_load_loses_nothing_and_spends_no_attempt(
    build_fleet: BuildFleet,
) -> None:
    fleet = build_fleet()
    names = [f"w{i}" for i in range(1, WORKERS + 1)]
    workers = {name: start(fleet, name) for name in names}
    fleet.start_reaper("reaper-1")

    @contextmanager
    def rolling() -> Iterator[None]:
        end = time.monotonic() + FAULT_S
        while time.monotonic() < end:
            for name in names:
                workers[name] = replace(fleet, name, workers[name])
        yield

    outcome = run_scenario(fleet, "rolling_restart", rolling, jobs=mixed_jobs)
    assert_nothing_lost(outcome, recovery_bounded=False)
    assert outcome.evidence["lease_rescues"] == 0, outcome.evidence
    with fleet.engine.connect() as conn:
        handed_back = conn.execute(
            text("SELECT count(*) FROM job_history WHERE reason LIKE 'handed_back:%'")
        ).scalar_one()
        attempts = conn.execute(text("SELECT max(attempt) FROM jobs")).scalar_one()
    assert handed_back > 0  # the rolls met long jobs in flight
    assert attempts == 1, "a hand-back spent an attempt"
