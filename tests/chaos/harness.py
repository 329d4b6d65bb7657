"""One chaos scenario's life: a fleet on private servers, a known set of jobs, one fault,
then the figures (``tests/chaos/figures.py``) printed as one JSON line."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import DBAPIError

from jobengine.domain.job import NewJob
from jobengine.producer import submit_jobs
from tests.chaos import handlers
from tests.chaos.figures import Outcome, measure, open_jobs, rows
from tests.chaos.servers import ENGINE_APP_PREFIX, ChaosPostgres, ChaosRedis
from tests.fleet.conftest import Fleet, wait_until

FULL = os.environ.get("CHAOS_FULL") == "1"
"""``make chaos`` sets it: full sizes and every scenario; otherwise the quick subset."""


def tunable(name: str, quick: float, full: float) -> float:
    """A size or duration: ``CHAOS_<NAME>`` if set, else the quick or the full default."""
    return float(os.environ.get(f"CHAOS_{name}", full if FULL else quick))


LEASE_TTL_S = tunable("LEASE_TTL_S", 3, 3)
HEARTBEAT_S = tunable("HEARTBEAT_S", 0.5, 0.5)
REAPER_INTERVAL_S = tunable("REAPER_INTERVAL_S", 0.5, 0.5)
LEADER_TTL_S = tunable("LEADER_TTL_S", 3, 3)
SLACK_S = tunable("SLACK_S", 5, 5)
"""Added to the issue's bound (2 x lease TTL + reaper interval): a worker's restart, Celery's
reconnect to the broker and one extra reaper tick on a loaded two-core machine."""
JOBS = int(tunable("JOBS", 300, 1000))
JOB_MS = int(tunable("JOB_MS", 200, 250))
"""Each job works this long: the jobs outlast the fault, so it meets jobs in flight."""
FAULT_S = tunable("FAULT_S", 10, 30)
DEADLINE_S = tunable("DEADLINE_S", 60, 180)
"""How long after the fault's end a scenario waits for every job to be final."""
WORKERS = int(tunable("WORKERS", 2, 3))
CONCURRENCY = int(tunable("CONCURRENCY", 2, 2))

CHAOS_ENV = {
    "JOBENGINE_LEASE_TTL_SECONDS": str(LEASE_TTL_S),
    "JOBENGINE_HEARTBEAT_INTERVAL_SECONDS": str(HEARTBEAT_S),
    "JOBENGINE_REAPER_INTERVAL_SECONDS": str(REAPER_INTERVAL_S),
    "JOBENGINE_LEADER_TTL_SECONDS": str(LEADER_TTL_S),
    "JOBENGINE_DISPATCH_GRACE_SECONDS": "0.5",
    # The production default: a scenario must not pass only because the lost-dispatch sweep
    # was tuned down to hide a message that the engine dropped.
    "JOBENGINE_REDISPATCH_AFTER_SECONDS": str(tunable("REDISPATCH_AFTER_S", 300, 300)),
    "JOBENGINE_HANDLER_MODULES": json.dumps(["tests.chaos.handlers"]),
    "JOBENGINE_LOG_LEVEL": "INFO",
}

LEADER_SQL = "SELECT holder FROM leadership WHERE expires_at > now()"
"""Who leads: the holder of the live leadership lease (``<reaper name>#<nonce>``)."""

RESULTS: list[dict[str, object]] = []
"""Every figure line of this session, for the terminal summary (tests/chaos/conftest.py)."""


def hold(seconds: float) -> None:
    """Keep a fault in place this long: its duration, not a wait for something to happen."""
    threading.Event().wait(seconds)


def observer_engine(url: str) -> Engine:
    """The test's own engine: its connections are not ``chaos-*``, so no fault touches them."""
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=2,
        connect_args={"connect_timeout": 3, "application_name": "observer"},
    )


@dataclass
class ChaosFleet(Fleet):
    """The fleet tests' ``Fleet``, with the chaos settings, an effect ledger, per-process
    ``application_name`` and, for a partition, processes started inside a namespace."""

    ledger: Path = Path()
    pg: ChaosPostgres | None = None
    broker: ChaosRedis | None = None
    netns_of: dict[str, str] = field(default_factory=dict)
    url_of: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Per process: its database and broker URLs, when they differ from the fleet's."""
    named: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    """The latest process started under each name."""

    def env(self, **overrides: str) -> dict[str, str]:
        return super().env(**{**CHAOS_ENV, handlers.LEDGER_ENV: str(self.ledger), **overrides})

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        env["PGAPPNAME"] = ENGINE_APP_PREFIX + name
        if name in self.url_of:
            env["JOBENGINE_DATABASE_URL"], env["JOBENGINE_BROKER_URL"] = self.url_of[name]
        if name in self.netns_of:
            argv = ["ip", "netns", "exec", self.netns_of[name], *argv]
        self.named[name] = super().spawn(name, argv, env)
        return self.named[name]

    def exited(self) -> list[str]:
        """Processes that ended by themselves: no fault here stops one without restarting it."""
        return sorted(name for name, proc in self.named.items() if proc.poll() is not None)

    def worker(self, name: str) -> subprocess.Popen[bytes]:
        return self.start_worker(name, concurrency=CONCURRENCY)

    def restart_worker(self, name: str, proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        """SIGKILL the worker's whole process tree, then start it again under the same name."""
        self.kill(proc)
        self.procs.remove(proc)
        (self.logs / f"{name}.log").rename(self.logs / f"{name}.{time.monotonic_ns()}.log")
        return self.worker(name)

    def leader(self, reapers: dict[str, subprocess.Popen[bytes]]) -> str | None:
        """The reaper leading now, by the leadership lease's holder."""
        with self.engine.connect() as conn:
            holders = [str(holder).split("#")[0] for (holder,) in rows(conn, LEADER_SQL)]
        return next((name for name in reapers if name in holders), None)

    def stop_all(self) -> None:
        super().stop_all()
        if self.broker is not None:
            self.broker.stop()
        if self.pg is not None:
            self.pg.stop()


def submit(fleet: Fleet, count: int, ms: int = JOB_MS) -> list[int]:
    ids: list[int] = []
    publisher = fleet.publisher()
    for start in range(0, count, 50):
        batch = [
            NewJob(type="chaos_effect", payload={"ms": ms, "n": i})
            for i in range(start, min(start + 50, count))
        ]
        ids += [job.id for job in submit_jobs(fleet.engine, publisher, batch)]
    return ids


def _open_jobs(engine: Engine) -> int | None:
    """Jobs not yet final, or None while the test itself cannot reach Postgres."""
    try:
        return open_jobs(engine)
    except DBAPIError:
        return None


def run_scenario(
    fleet: ChaosFleet,
    scenario: str,
    fault: Callable[[], AbstractContextManager[None]],
    *,
    capacity_left: float = 1.0,
    jobs: Callable[[ChaosFleet], list[int]] | None = None,
) -> Outcome:
    """Submit ``JOBS`` jobs (or what ``jobs`` submits: their ids), let a tenth finish, inject
    ``fault`` (its ``__enter__`` returns at the fault's end, its ``__exit__`` runs once every
    job is final or the deadline passed), then read the figures. Prints them as one JSON line
    and keeps them for the summary.

    ``capacity_left`` is the share of the fleet's worker processes that can still work after
    the fault's end (a worker that stays cut off until the end is not there to drain the
    backlog): the bound's drain term is the pre-fault drain time divided by it."""
    started = time.monotonic()
    ids = submit(fleet, JOBS) if jobs is None else jobs(fleet)
    [open_before] = wait_until(
        lambda: (n := _open_jobs(fleet.engine)) is not None and n <= len(ids) * 0.9 and [n],
        120,
        "a tenth of the jobs final",
    )
    rate = (len(ids) - open_before) / (time.monotonic() - started)
    recovered: float | None = None
    with fault():
        fault_end = time.monotonic()
        left = _open_jobs(fleet.engine)
        while time.monotonic() < fault_end + DEADLINE_S:
            if _open_jobs(fleet.engine) == 0:
                recovered = time.monotonic() - fault_end
                break
            hold(0.1)
    # The bound, the stated slack, and the time this fleet needed before the fault to
    # finish as many jobs as were still open at the fault's end, at the capacity it has left.
    drain = (len(ids) if left is None else left) / max(rate * capacity_left, 1.0)
    bound = 2 * LEASE_TTL_S + REAPER_INTERVAL_S + SLACK_S + drain
    figures, evidence = measure(fleet.engine, fleet.ledger, scenario, ids, recovered)
    evidence.update(exited=fleet.exited(), bound_s=round(bound, 1))
    print(json.dumps(figures))
    print(json.dumps({"scenario": scenario, **evidence}))
    RESULTS.append({**figures, **evidence})
    return Outcome(figures, evidence, bound)


@contextlib.contextmanager
def stopped(proc: subprocess.Popen[bytes]) -> Iterator[None]:
    """SIGSTOP a process tree; SIGCONT it on the way out, whatever happened."""
    os.killpg(proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGCONT)
