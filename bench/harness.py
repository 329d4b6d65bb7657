"""What every throughput benchmark here shares: the private servers, one measured backlog, and
its figures (jobs per second and CPU seconds per 1,000 jobs).

A system under test is started by a context manager that yields a :class:`Running`: how to
submit jobs, how to tell they are all done, the worker processes to charge CPU to, and the
Postgres backend that polls for completion (left out of the Postgres figure, since it is the
benchmark's probe, not the system's work; the system's own submissions are counted).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from sqlalchemy import make_url

from bench.proc_cpu import process_cpu_seconds, tree_cpu_seconds
from jobengine.embedded import EmbeddedPostgres, EmbeddedRedis

REPO = Path(__file__).resolve().parents[1]
POLL_SECONDS = 0.02


class BenchmarkError(Exception):
    """A run that cannot give figures: what went wrong, and where to look."""


@dataclass
class Worker:
    """A worker process of a system under test, and the file its output goes to."""

    proc: subprocess.Popen[bytes]
    log: Path

    def check_alive(self) -> None:
        code = self.proc.poll()
        if code is not None:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise BenchmarkError(
                f"worker {self.proc.args!r} exited with code {code}; the end of its log:\n{tail}"
            )


def wait_for(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    workers: Sequence[Worker] = (),
) -> None:
    """Poll ``predicate`` until true; a worker that died or the deadline ends the wait.

    The pause grows with the time waited (a 200th of it, at least ``POLL_SECONDS``), so a
    long backlog is timed to within 0.5% while the poll, a query competing for the same two
    cores as the system under test, runs ten times less often than at a fixed 20 ms.
    """
    started = time.monotonic()
    while not predicate():
        for worker in workers:
            worker.check_alive()
        waited = time.monotonic() - started
        if waited > timeout:
            raise BenchmarkError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(max(POLL_SECONDS, waited / 200))


def libpq_url(sqlalchemy_url: str) -> str:
    """The same server and database as a plain ``postgresql://`` URL, for psycopg, asyncpg
    and the peers, which know nothing of SQLAlchemy's driver suffix."""
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(False)


def postmaster_pid(pg: EmbeddedPostgres) -> int:
    """The server's root process: its first line of ``postmaster.pid``."""
    return int((pg.pgdata / "postmaster.pid").read_text().split()[0])


@dataclass
class Servers:
    """One private Postgres (fsync and synchronous commit as initdb leaves them: on) and one
    private Redis, shared by every system of a run."""

    root: Path
    admin_url: str
    broker_url: str
    postmaster: int
    broker_pid: int | None = None

    def settings(self) -> dict[str, str]:
        with psycopg.connect(libpq_url(self.admin_url)) as conn:
            return {
                name: str(conn.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
                for name in ("server_version", "fsync", "synchronous_commit")
            }

    @contextmanager
    def fresh_database(self, name: str) -> Iterator[str]:
        """A new, empty database for one system's run, dropped after; its SQLAlchemy URL."""
        with psycopg.connect(libpq_url(self.admin_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield make_url(self.admin_url).set(database=name).render_as_string(False)
        finally:
            with psycopg.connect(libpq_url(self.admin_url), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def private_servers(root: Path) -> Iterator[Servers]:
    pg = EmbeddedPostgres(root / "pg")
    broker = EmbeddedRedis(root / "redis")
    try:
        url = pg.start()
        broker_url = broker.start()
        broker_pid = None if broker.process is None else broker.process.pid
        yield Servers(root, url, broker_url, postmaster_pid(pg), broker_pid)
    finally:
        broker.stop()
        pg.stop()


@contextmanager
def poll_connection(
    sqlalchemy_url: str,
) -> Iterator[tuple[psycopg.Connection[tuple[object, ...]], int]]:
    """The benchmark's own connection for completion checks, and its backend's pid. It
    prepares nothing, so it works through a transaction pooler too (bench/pgbouncer.py)."""
    with psycopg.connect(
        libpq_url(sqlalchemy_url), autocommit=True, prepare_threshold=None
    ) as conn:
        yield conn, conn.info.backend_pid


def count_is_zero(conn: psycopg.Connection[tuple[object, ...]], sql: str) -> Callable[[], bool]:
    def check() -> bool:
        row = conn.execute(sql).fetchone()
        return row is not None and row[0] == 0

    return check


@dataclass
class Running:
    """A system whose workers are up: what a measured backlog needs of it."""

    submit: Callable[[int], None]
    done: Callable[[], bool]
    workers: Sequence[Worker]
    poll_backend: int | None  # None: the system keeps nothing in Postgres


@dataclass(frozen=True)
class Figures:
    system: str
    jobs: int
    seconds: float
    worker_cpu_s: float
    postgres_cpu_s: float | None
    probe_cpu_s: float | None  # the benchmark's polling backend, left out of postgres_cpu_s
    parts_cpu_s: dict[str, float] = field(default_factory=dict)
    """CPU seconds by part, when the caller asked for them (``measure_backlog``'s ``parts``)."""

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.seconds

    @property
    def worker_cpu_per_1k(self) -> float:
        return self.worker_cpu_s * 1000 / self.jobs

    @property
    def postgres_cpu_per_1k(self) -> float | None:
        if self.postgres_cpu_s is None:
            return None
        return self.postgres_cpu_s * 1000 / self.jobs

    def line(self) -> str:
        pg = self.postgres_cpu_per_1k
        return (
            f"{self.system:<28} {self.jobs_per_s:>9,.1f} jobs/s   CPU s per 1,000 jobs: "
            f"worker {self.worker_cpu_per_1k:.2f}, Postgres {'—' if pg is None else f'{pg:.2f}'}"
            + ("" if self.probe_cpu_s is None else f" (poll: {self.probe_cpu_s:.2f} s, left out)")
        )


def measure_backlog(
    system: str,
    running: Running,
    jobs: int,
    postmaster: int | None,
    *,
    warmup: int = 50,
    timeout: float = 900,
    parts: Callable[[], dict[str, float]] | None = None,
) -> Figures:
    """Warm the workers up, then time a backlog of ``jobs`` from the first submission until
    all are done, with the CPU the workers and Postgres (the tree under ``postmaster``; None:
    a server whose processes are not ours to read) used in that window; ``parts`` reads CPU
    seconds so far by part, for a finer split of the same window."""
    roots = [w.proc.pid for w in running.workers]
    running.submit(warmup)
    wait_for(running.done, 180, f"{system}: {warmup} warm-up jobs done", running.workers)
    exclude = [] if running.poll_backend is None else [running.poll_backend]
    pg_roots = [] if postmaster is None or running.poll_backend is None else [postmaster]
    worker_before = tree_cpu_seconds(roots)
    pg_before = tree_cpu_seconds(pg_roots, exclude)
    probe_before = sum(process_cpu_seconds(pid) for pid in exclude)
    parts_before = {} if parts is None else parts()
    started = time.perf_counter()
    running.submit(jobs)
    wait_for(running.done, timeout, f"{system}: {jobs} jobs done", running.workers)
    seconds = time.perf_counter() - started
    split = {} if parts is None else {k: v - parts_before.get(k, 0.0) for k, v in parts().items()}
    worker = tree_cpu_seconds(roots) - worker_before
    pg = tree_cpu_seconds(pg_roots, exclude) - pg_before
    probe = sum(process_cpu_seconds(pid) for pid in exclude) - probe_before
    if not pg_roots:
        return Figures(system, jobs, seconds, worker, None, None, split)
    return Figures(system, jobs, seconds, worker, pg, probe, split)


def median_figures(runs: Sequence[Figures]) -> dict[str, float | None]:
    pg = [r.postgres_cpu_per_1k for r in runs]
    return {
        "jobs_per_s": round(statistics.median(r.jobs_per_s for r in runs), 1),
        "worker_cpu_s_per_1k": round(statistics.median(r.worker_cpu_per_1k for r in runs), 3),
        "postgres_cpu_s_per_1k": (
            None if None in pg else round(statistics.median(p for p in pg if p is not None), 3)
        ),
    }


def spawn(argv: Sequence[str], env: dict[str, str], log: Path) -> Worker:
    """A worker process in a session of its own (so a stop reaches its children), its output
    in ``log``."""
    with log.open("wb") as output:
        proc = subprocess.Popen(
            [sys.executable, *argv],
            cwd=REPO,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Worker(proc, log)


def stop(worker: Worker) -> None:
    """SIGTERM to the worker's whole session (a warm shutdown), SIGKILL after 30 s."""
    proc = worker.proc
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
