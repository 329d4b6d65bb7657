"""The Celery-based systems of the throughput benchmarks: jobengine and bare Celery.

Each starts one prefork worker (``-c N``) of its app and yields a :class:`~bench.harness.Running`.
Bare Celery is done when its queue and its unacknowledged set are empty; jobengine is done when
every job is ``completed`` in Postgres.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import text

from bench.harness import REPO, Running, count_is_zero, poll_connection, spawn, stop, wait_for
from config.settings import Settings
from jobengine.domain.job import NewJob
from jobengine.fleet import make_publisher, publisher_app
from jobengine.producer import submit_jobs
from jobengine.store import migrate
from jobengine.store.database import make_engine

OPEN_JOBS = "SELECT count(*) FROM jobs WHERE status <> 'completed'"


def worker_env(
    database_url: str, broker_url: str, prefetch: int, task_events: bool
) -> dict[str, str]:
    """The environment of every Celery worker and producer here. Task events follow
    ``JOBENGINE_TASK_EVENTS`` on both jobengine and bare Celery with its settings, since the
    bare app is configured from the same settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
    env.update(
        JOBENGINE_DATABASE_URL=database_url,
        JOBENGINE_BROKER_URL=broker_url,
        JOBENGINE_LOG_LEVEL="WARNING",
        JOBENGINE_WORKER_PREFETCH_MULTIPLIER=str(prefetch),
        JOBENGINE_TASK_EVENTS=str(task_events).lower(),
        BENCH_BROKER_URL=broker_url,
        PYTHONPATH=str(REPO),
    )
    return env


def celery_worker_argv(app: str, concurrency: int, queue: str | None) -> list[str]:
    """``celery worker`` for ``app``. With a queue (jobengine's settings) mingle and gossip are
    off, as jobengine's fleet runs them; without (Celery's defaults) the worker is started the
    way Celery's docs start one, on its default queue."""
    argv = ["-m", "celery", "-A", app, "worker", "-P", "prefork", "-c", str(concurrency)]
    if queue is not None:
        argv += ["-Q", queue, "--without-mingle", "--without-gossip"]
    return [*argv, "-l", "WARNING"]


def broker_drained(client: redis.Redis, queue: str) -> bool:
    waiting = sum(client.llen(k) for k in client.keys(f"{queue}*"))
    return waiting == 0 and client.hlen("unacked") == 0


@contextmanager
def bare_celery(
    app_module: str,
    publisher: Any,
    queue: str,
    worker_queue: str | None,
    env: dict[str, str],
    concurrency: int,
    logs: Path,
) -> Iterator[Running]:
    """A worker of ``app_module`` fed with ``bench.noop`` tasks by ``publisher`` (a Celery app
    configured as the worker's own)."""
    client = redis.Redis.from_url(env["BENCH_BROKER_URL"])
    client.flushall()
    worker = spawn(
        celery_worker_argv(app_module, concurrency, worker_queue), env, logs / "celery.log"
    )

    def submit(count: int) -> None:
        for _ in range(count):
            publisher.send_task("bench.noop", queue=queue)

    try:
        yield Running(submit, lambda: broker_drained(client, queue), [worker], None)
    finally:
        stop(worker)


def bare_celery_with_jobengine_settings(
    settings: Settings, env: dict[str, str], concurrency: int, logs: Path
) -> AbstractContextManager[Running]:
    return bare_celery(
        "bench.bare_celery_app",
        publisher_app(settings, env["BENCH_BROKER_URL"]),
        "default",
        "default",
        env,
        concurrency,
        logs,
    )


def bare_celery_with_celery_defaults(
    env: dict[str, str], concurrency: int, logs: Path
) -> AbstractContextManager[Running]:
    from celery import Celery

    publisher = Celery("celery-defaults-producer", broker=env["BENCH_BROKER_URL"])
    return bare_celery(
        "bench.celery_defaults_app", publisher, "celery", None, env, concurrency, logs
    )


@dataclass
class JobengineRunning:
    """jobengine's :class:`Running`, and its probe of submit → running latency."""

    running: Running
    latencies_ms: Callable[[int], list[float]]


@contextmanager
def jobengine(
    database_url: str,
    env: dict[str, str],
    concurrency: int,
    logs: Path,
    *,
    chunk_size: int,
    batch: int,
    app_module: str = "workers.app",
) -> Iterator[JobengineRunning]:
    """jobengine's worker (``workers.app``) on a migrated database; submissions go through
    ``submit_jobs`` in batches of ``batch``, chunked by ``chunk_size`` (1: one job per
    message)."""
    broker_url = env["BENCH_BROKER_URL"]
    redis.Redis.from_url(broker_url).flushall()
    engine = make_engine(database_url)
    try:
        migrate.upgrade(engine)
        with engine.begin() as emptying:
            emptying.execute(text("TRUNCATE jobs, job_history, job_events CASCADE"))
        publisher = make_publisher(
            Settings(database_url=database_url, broker_url=broker_url), broker_url
        )
        worker = spawn(
            celery_worker_argv(app_module, concurrency, "default"), env, logs / "jobengine.log"
        )

        def submit(count: int) -> None:
            for first in range(0, count, batch):
                size = min(batch, count - first)
                submit_jobs(
                    engine,
                    publisher,
                    [NewJob(type="noop") for _ in range(size)],
                    chunk_size=chunk_size,
                )

        with poll_connection(database_url) as (conn, backend):
            done = count_is_zero(conn, OPEN_JOBS)

            def latencies_ms(count: int) -> list[float]:
                """Submit → running of ``count`` lone jobs on an idle fleet, from Postgres's
                timestamps."""
                found: list[float] = []
                for _ in range(count):
                    [job] = submit_jobs(engine, publisher, [NewJob(type="noop")])
                    wait_for(done, 60, "a lone job completed", [worker])
                    with engine.connect() as c:
                        waited: timedelta = c.execute(
                            text("SELECT started_at - created_at FROM jobs WHERE id = :i"),
                            {"i": job.id},
                        ).scalar_one()
                    found.append(waited.total_seconds() * 1000)
                return found

            try:
                yield JobengineRunning(Running(submit, done, [worker], backend), latencies_ms)
            finally:
                stop(worker)
    finally:
        engine.dispose()
