"""Real fleets for tests: an embedded Redis, Celery worker processes and reaper processes,
all started and stopped by the fixtures. Nothing is eager and nothing is mocked.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, text

from config.settings import Settings
from jobengine.domain.job import Job, JobHistory
from jobengine.embedded import EmbeddedPostgres, EmbeddedRedis
from jobengine.fleet import make_publisher
from jobengine.store import migrate
from jobengine.store.database import make_engine, transaction
from jobengine.store.history_repository import JobHistoryRepository
from jobengine.store.jobs_repository import JobsRepository

REPO = Path(__file__).resolve().parents[2]

FLEET_ENV = {
    "JOBENGINE_LEASE_TTL_SECONDS": "2",
    "JOBENGINE_HEARTBEAT_INTERVAL_SECONDS": "0.5",
    "JOBENGINE_REAPER_INTERVAL_SECONDS": "0.3",
    "JOBENGINE_DISPATCH_GRACE_SECONDS": "0.5",
    "JOBENGINE_REDISPATCH_AFTER_SECONDS": "3",
    "JOBENGINE_HANDLER_MODULES": json.dumps(["tests.fleet.handlers"]),
    "JOBENGINE_LOG_LEVEL": "INFO",
    "JOBENGINE_COMMAND_TYPES_ENABLED": "true",
}


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(Path(tmp_path_factory.mktemp("redis")))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def broker_url(redis_server: EmbeddedRedis) -> str:
    redis.Redis.from_url(redis_server.url).flushall()
    return redis_server.url


@dataclass
class Fleet:
    db_url: str
    broker_url: str
    logs: Path
    engine: Engine
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
        env.update(FLEET_ENV)
        env.update(
            JOBENGINE_DATABASE_URL=self.db_url,
            JOBENGINE_BROKER_URL=self.broker_url,
            PYTHONPATH=str(REPO),
        )
        env.update(overrides)
        return env

    def settings(self) -> Settings:
        return Settings(database_url=self.db_url, broker_url=self.broker_url)

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs.append(proc)
        return proc

    def log_of(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start_worker(
        self, name: str, concurrency: int = 1, queues: str = "default", **env: str
    ) -> subprocess.Popen[bytes]:
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.app",
            "worker",
            "-P",
            "prefork",
            "-c",
            str(concurrency),
            "-Q",
            queues,
            "-n",
            f"{name}@%h",
            "--without-mingle",
            "--without-gossip",
            "-E",
            "-l",
            "INFO",
        ]
        proc = self.spawn(name, argv, self.env(**env))
        wait_until(
            lambda: "ready." in self.log_of(name) or proc.poll() is not None,
            60,
            f"worker {name} ready",
        )
        assert proc.poll() is None, self.log_of(name)
        return proc

    def start_reaper(self, name: str, **env: str) -> subprocess.Popen[bytes]:
        argv = [
            sys.executable,
            "-c",
            f"from jobengine.fleet import run_reaper; run_reaper(name={name!r})",
        ]
        return self.spawn(name, argv, self.env(**env))

    def publisher(self) -> Any:
        return make_publisher(self.settings(), self.broker_url)

    def job(self, job_id: int) -> Job:
        with transaction(self.engine) as conn:
            return JobsRepository(conn).get(job_id)

    def history(self, job_id: int) -> list[JobHistory]:
        with transaction(self.engine) as conn:
            return JobHistoryRepository(conn).for_job(job_id)

    def effects(self, job_id: int | None = None) -> list[tuple[int, int, str, int]]:
        sql = "SELECT job_id, attempt, what, pid FROM test_effects"
        params: dict[str, Any] = {}
        if job_id is not None:
            sql += " WHERE job_id = :j"
            params["j"] = job_id
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql + " ORDER BY id"), params)]  # type: ignore[misc]

    def release(self, job_id: int, attempt: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                text("INSERT INTO test_releases (job_id, attempt) VALUES (:j, :a)"),
                {"j": job_id, "a": attempt},
            )

    def kill(
        self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL, *, wait: bool = True
    ) -> None:
        """Signal the process and every child it forked (its whole session)."""
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        if wait:
            proc.wait(30)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGCONT)
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


@pytest.fixture
def fleet(db_url: str, broker_url: str, engine: Engine, tmp_path: Path) -> Iterator[Fleet]:
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE test_effects (id bigserial PRIMARY KEY, job_id bigint, attempt int, "
                "what text, pid int, at timestamptz DEFAULT clock_timestamp())"
            )
        )
        conn.execute(text("CREATE TABLE test_releases (job_id bigint, attempt int)"))
        conn.execute(text("CREATE TABLE test_flags (name text PRIMARY KEY)"))
    fleet = Fleet(db_url=db_url, broker_url=broker_url, logs=tmp_path, engine=engine)
    try:
        yield fleet
    finally:
        fleet.stop_all()


@dataclass
class PrivatePostgres:
    """A Postgres of one test's own, for faults the shared server must not see (restarts,
    fewer connection slots)."""

    server: EmbeddedPostgres
    url: str
    engine: Engine

    def pg_ctl(self, *args: str) -> None:
        self.server._run("pg_ctl", "-D", str(self.server.pgdata), "-w", *args)

    def restart_immediately(self, max_connections: int = 300) -> None:
        """A crash-like restart (no clean shutdown), optionally with fewer connection slots."""
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.server.port} -k {self.server.pgdata} "
            f"-c max_connections={max_connections} -c shared_buffers=128MB"
        )
        log = str(self.server.pgdata / "server.log")
        self.pg_ctl("-m", "immediate", "-l", log, "-o", options, "restart")


@pytest.fixture
def private_pg(tmp_path: Path) -> Iterator[PrivatePostgres]:
    server = EmbeddedPostgres(tmp_path / "own-pg")
    url = server.start()
    engine = make_engine(url, pool_size=2, max_overflow=0)
    migrate.upgrade(engine)
    try:
        yield PrivatePostgres(server, url, engine)
    finally:
        engine.dispose()
        server.stop()


@pytest.fixture
def private_fleet(private_pg: PrivatePostgres, broker_url: str, tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(
        db_url=private_pg.url, broker_url=broker_url, logs=tmp_path, engine=private_pg.engine
    )
    try:
        yield fleet
    finally:
        fleet.stop_all()
