"""Procrastinate as its docs set it up: an ``App`` on a ``PsycopgConnector``, one no-op task,
workers started with ``procrastinate --app=… worker`` and its defaults (concurrency 1 per
worker, LISTEN/NOTIFY on, finished jobs kept with status ``succeeded``).

One departure: its log level is ``warning``, as every other system here runs. At its default
(``info``) each job writes two log lines, which no other system does, and the benchmark
would measure its logging rather than its queue.

The workers' connector reads the database from ``BENCH_DSN``; the producer's is put in place
for the run with ``App.replace_connector``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from procrastinate import App, PsycopgConnector

from bench.harness import Running, count_is_zero, libpq_url, poll_connection, spawn, stop

app = App(connector=PsycopgConnector(conninfo=os.environ.get("BENCH_DSN", "")))

OPEN_JOBS = "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"


@app.task(name="noop")
def noop() -> None:
    return None


async def _apply_schema() -> None:
    async with app.open_async():
        await app.schema_manager.apply_schema_async()


async def _defer(count: int, batch: int) -> None:
    async with app.open_async():
        for first in range(0, count, batch):
            await noop.batch_defer_async(*({} for _ in range(min(batch, count - first))))


@contextmanager
def procrastinate_workers(
    database_url: str, env: dict[str, str], processes: int, logs: Path, *, batch: int
) -> Iterator[Running]:
    """``processes`` Procrastinate workers on a fresh database; done when no job is ``todo``
    or ``doing``."""
    dsn = libpq_url(database_url)
    with app.replace_connector(PsycopgConnector(conninfo=dsn)):
        asyncio.run(_apply_schema())
        yield from _run(dsn, database_url, env, processes, logs, batch)


def _run(
    dsn: str, database_url: str, env: dict[str, str], processes: int, logs: Path, batch: int
) -> Iterator[Running]:
    worker_env = {**env, "BENCH_DSN": dsn}
    argv = [
        "-m",
        "procrastinate",
        "--app=bench.peer_procrastinate.app",
        "--log-level=warning",
        "worker",
    ]
    workers = [spawn(argv, worker_env, logs / f"procrastinate-{n}.log") for n in range(processes)]
    try:
        with poll_connection(database_url) as (conn, backend):
            yield Running(
                lambda count: asyncio.run(_defer(count, batch)),
                count_is_zero(conn, OPEN_JOBS),
                workers,
                backend,
            )
    finally:
        for worker in workers:
            stop(worker)
