"""The whole engine through a real PgBouncer in transaction mode with a small pool: migrations
(``jobengine db upgrade``), the API (``jobengine api``), two worker processes and two reapers
(the reapers through their own pool, which sets their bounds) all reach Postgres only through
it, with ``JOBENGINE_DB_POOLER=transaction``. A few hundred jobs with retries, a cancellation
and a run (a diamond fanning out) all end once, while PgBouncer is reloaded, then killed with
every connection it held and started again, and the worker running a job is frozen until the
leader rescues its lease. Postgres never sees more connections than PgBouncer's pools.

Prints one JSON line of figures (the chaos suite's, and the pooling's); ``make chaos`` runs it
at full size.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import Engine, text

from jobengine.embedded import EmbeddedPostgres, free_loopback_port
from tests.api.conftest import bearer, make_key
from tests.chaos.figures import FINAL_STATES, measure, open_jobs, wait_all_final
from tests.chaos.harness import LEADER_SQL, RESULTS, ChaosFleet, hold, observer_engine, tunable
from tests.chaos.servers import ChaosRedis
from tests.fleet.conftest import wait_until
from tests.pgbouncer.bouncer import REAPER_DB, PgBouncer

JOBS = int(tunable("BOUNCER_JOBS", 200, 1000))
JOB_MS = int(tunable("BOUNCER_JOB_MS", 30, 100))
FAN_OUT = int(tunable("BOUNCER_FAN_OUT", 20, 100))
DOWN_S = tunable("BOUNCER_DOWN_S", 1, 3)
RETRY_EVERY = 10
"""Every tenth plain job fails its first attempt and is retried."""
POOLED = {
    "JOBENGINE_DB_POOLER": "transaction",
    "JOBENGINE_HANDLER_MODULES": json.dumps(["tests.pgbouncer.handlers"]),
    # The workers' registry rows too are written many times over, on many server connections.
    "JOBENGINE_WORKER_HEARTBEAT_SECONDS": "0.5",
}
SESSION_STATE_ERRORS = (
    "prepared statement",
    "unsupported startup parameter",
    "Exception in thread",
)
"""What a process logs when a connection's state did not survive the pooler."""
JOBENGINE = str(Path(sys.executable).parent / "jobengine")
SERVER_CONNECTIONS_SQL = """
SELECT count(*) FROM pg_stat_activity
WHERE backend_type = 'client backend' AND application_name <> 'observer'
"""
"""Postgres's connections other than the test's own: PgBouncer's server connections."""


class PooledFleet(ChaosFleet):
    """Every process of this fleet is told it reaches Postgres through a transaction pooler."""

    def env(self, **overrides: str) -> dict[str, str]:
        return super().env(**{**POOLED, **overrides})


class Sampler:
    """The most server connections (Postgres's view) and client connections (PgBouncer's)
    seen at once, read every 50 ms until stopped."""

    def __init__(self, engine: Engine, bouncer: PgBouncer) -> None:
        self.engine, self.bouncer = engine, bouncer
        self.servers = self.clients = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            with self.engine.connect() as conn:
                now = int(conn.execute(text(SERVER_CONNECTIONS_SQL)).scalar_one())
            self.servers = max(self.servers, now)
            try:
                pools = self.bouncer.admin("SHOW POOLS")
            except (psycopg.OperationalError, AssertionError):
                continue  # PgBouncer is down or starting: the fault
            engine_pools = [p for p in pools if p["database"] != "pgbouncer"]
            clients = sum(int(p["cl_active"]) + int(p["cl_waiting"]) for p in engine_pools)
            self.clients = max(self.clients, clients)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def fleet(pg: EmbeddedPostgres, bouncer: PgBouncer, tmp_path: Path) -> Iterator[PooledFleet]:
    """Every fleet process gets PgBouncer's URL (the reapers their pool's); the test's own
    engine goes to Postgres directly, to watch."""
    broker = ChaosRedis(tmp_path / "redis", port=free_loopback_port())
    broker.start()
    logs = tmp_path / "logs"
    logs.mkdir()
    direct = f"postgresql+psycopg://postgres@127.0.0.1:{pg.port}/postgres"
    fleet = PooledFleet(
        db_url=bouncer.url(),
        broker_url=broker.url,
        logs=logs,
        engine=observer_engine(direct),
        ledger=tmp_path / "ledger",
        broker=broker,
    )
    for reaper in ("r1", "r2"):
        fleet.url_of[reaper] = (bouncer.url(REAPER_DB), broker.url)
    try:
        yield fleet
    finally:
        fleet.stop_all()
        fleet.engine.dispose()


RUNNING_OWNER_SQL = "SELECT lease_owner FROM jobs WHERE id = :id AND status = 'running'"
Procs = subprocess.Popen[bytes]


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def holder_of(fleet: ChaosFleet, job_id: int, workers: dict[str, Procs]) -> str | None:
    """The worker whose process holds ``job_id``'s lease while it runs (the lease owner is
    ``host:pid`` of a pool process, in its worker's process group)."""
    with fleet.engine.connect() as conn:
        owner = conn.execute(text(RUNNING_OWNER_SQL), {"id": job_id}).scalar()
    if owner is None:
        return None
    group = _group_of(int(str(owner).rsplit(":", 1)[1]))
    return next((name for name, proc in workers.items() if proc.pid == group), None)


RESCUED_SQL = "SELECT count(*) FROM job_history WHERE job_id = :id AND reason LIKE 'lease_expired%'"


def rescued(engine: Engine, job_id: int) -> bool:
    """Whether the leader has taken ``job_id``'s lease back. Not any rescue: the frozen worker
    holds other jobs too, whose leases may expire a sweep earlier; woken before its own lease
    is taken, the worker would renew it, and the job would run on forever."""
    with engine.connect() as conn:
        return bool(conn.execute(text(RESCUED_SQL), {"id": job_id}).scalar_one())


def migrate_through(fleet: ChaosFleet) -> str:
    done = subprocess.run(
        [JOBENGINE, "db", "upgrade"], env=fleet.env(), capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def start_api(fleet: ChaosFleet) -> str:
    port = free_loopback_port()
    env = fleet.env(JOBENGINE_API_HOST="127.0.0.1", JOBENGINE_API_PORT=str(port))
    proc = fleet.spawn("api", [JOBENGINE, "api"], env)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.poll() is None, fleet.log_of("api")
        try:
            return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, 60, "the API ready through PgBouncer")
    return url


def diamond(fan_out: int) -> dict[str, Any]:
    keys = ["A", "B", "C", "D", *(f"f{i}" for i in range(fan_out))]
    edges = [("A", "B"), ("A", "C"), ("B", "D"), ("C", "D"), *(("D", k) for k in keys[4:])]
    return {
        "name": "diamond",
        "projectId": "bouncer",
        "jobs": [{"key": k, "type": "pooled_effect", "payload": {"ms": JOB_MS}} for k in keys],
        "edges": [{"parent": p, "child": c} for p, c in edges],
    }


def submit_all(client: httpx.Client) -> tuple[list[int], set[int], int, int, int]:
    """Plain jobs in batches of 50 (every tenth failing once), the run, a job that runs until
    cancelled, one that runs until its lease is rescued: every id, the retried ones', the
    run's, the two long jobs'."""
    ids: list[int] = []
    retried: set[int] = set()
    for start in range(0, JOBS, 50):
        batch = [
            {
                "type": "pooled_effect",
                "projectId": "bouncer",
                "payload": {"ms": JOB_MS, "fail_attempts": [1] if n % RETRY_EVERY == 0 else []},
            }
            for n in range(start, min(start + 50, JOBS))
        ]
        made = client.post("/api/v1/jobs/batch", json={"jobs": batch})
        assert made.status_code == 201, made.text
        for n, job in enumerate(made.json()["jobs"], start):
            ids.append(job["id"])
            if n % RETRY_EVERY == 0:
                retried.add(job["id"])
    run = client.post("/api/v1/runs", json=diamond(FAN_OUT))
    assert run.status_code == 201, run.text
    ids += [job["id"] for job in run.json()["jobs"]]
    held = client.post("/api/v1/jobs", json={"type": "pooled_until_cancelled", "projectId": "b"})
    assert held.status_code == 201, held.text
    ids.append(held.json()["id"])
    frozen = client.post("/api/v1/jobs", json={"type": "pooled_until_rescued", "projectId": "b"})
    assert frozen.status_code == 201, frozen.text
    ids.append(frozen.json()["id"])
    return ids, retried, run.json()["id"], held.json()["id"], frozen.json()["id"]


@pytest.mark.chaos
@pytest.mark.chaos_quick
def test_the_engine_runs_through_pgbouncer_in_transaction_mode_and_loses_nothing_to_its_restart(
    fleet: ChaosFleet, bouncer: PgBouncer
) -> None:
    started = time.monotonic()
    assert migrate_through(fleet).rstrip().endswith("(head)")
    with ThreadPoolExecutor(2) as pool:
        workers = dict(zip(("w1", "w2"), pool.map(fleet.worker, ("w1", "w2")), strict=True))
    reapers = {name: fleet.start_reaper(name) for name in ("r1", "r2")}
    api = start_api(fleet)
    headers = {**bearer(make_key(fleet.engine, "acme", "jobs:read", "jobs:write")),
               "X-Tenant-Id": "acme"}  # fmt: skip
    with (
        Sampler(fleet.engine, bouncer) as sampler,
        httpx.Client(base_url=api, headers=headers, timeout=60) as client,
    ):
        ids, retried, run_id, held, frozen = submit_all(client)
        wait_until(lambda: client.get(f"/api/v1/jobs/{held}").json()["status"] == "running", 60,
                   "the job to cancel running")  # fmt: skip
        cancelled = client.delete(f"/api/v1/jobs/{held}")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        wait_until(lambda: open_jobs(fleet.engine) <= len(ids) * 0.75, 60, "a quarter final")
        holder = wait_until(lambda: holder_of(fleet, frozen, workers), 60, "the job to rescue")
        os.killpg(workers[holder].pid, signal.SIGSTOP)  # its lease stays until the leader's rescue
        try:
            bouncer.reload()
            bouncer.kill()
            hold(DOWN_S)
            bouncer.start()
            restarted = time.monotonic()
            wait_until(lambda: rescued(fleet.engine, frozen), 30, "the frozen job's lease rescued")
        finally:
            os.killpg(workers[holder].pid, signal.SIGCONT)
        wait_all_final(fleet.engine, 90)
        recovered = time.monotonic() - restarted
        answered = client.get(f"/api/v1/runs/{run_id}").json()
    figures, evidence = measure(fleet.engine, fleet.ledger, "pgbouncer_restart", ids, recovered)
    with fleet.engine.connect() as conn:
        leaders = [str(h).split("#")[0] for (h,) in conn.execute(text(LEADER_SQL))]
        attempts = dict(conn.execute(text("SELECT id, attempt FROM jobs")).all())
    figures.update(
        most_client_connections=sampler.clients,
        most_server_connections=sampler.servers,
        pool_sizes=bouncer.pool_size + bouncer.reaper_pool_size,
        took_s=round(time.monotonic() - started, 1),
    )
    print(json.dumps(figures))
    print(json.dumps({"scenario": "pgbouncer_restart", **evidence}))
    RESULTS.append({**figures, **evidence})

    assert figures["lost"] == 0 and figures["double_finalized"] == 0, evidence
    assert figures["completed_without_effect"] == 0, figures
    assert evidence["by_status"] == {"completed": len(ids) - 1, "cancelled": 1}, evidence
    assert all(attempts[job_id] >= 2 for job_id in retried | {frozen})
    assert answered["status"] == "completed" and answered["jobsCompleted"] == FAN_OUT + 4
    assert evidence["lease_rescues"] >= 1, evidence  # the leader worked through its pool
    assert len(leaders) == 1 and leaders[0] in reapers, leaders
    assert not any("reaper_bounds_missing" in fleet.log_of(name) for name in reapers)
    logs = {name: fleet.log_of(name) for name in fleet.named}
    assert not [(n, e) for n, log in logs.items() for e in SESSION_STATE_ERRORS if e in log]
    assert sampler.servers <= bouncer.pool_size + bouncer.reaper_pool_size
    assert sampler.servers < sampler.clients  # connections were shared
    assert set(FINAL_STATES) >= set(evidence["by_status"])
