"""PgQueuer as its quick start sets it up: an asyncpg connection, one ``PgQueuer`` with a
no-op entrypoint, run with its defaults (fetch batch of 10, its buffered completions).

``pgq run`` of PgQueuer 1.6 dies at start with typer 0.29 (a log-level ``AttributeError``), so
each worker process runs ``pgqueuer.run(factory)``, which is what ``pgq run`` calls; SIGTERM
stops it as it stops ``pgq run``. Started as ``python -m bench.peer_pgqueuer`` with the
database in ``BENCH_DSN``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pgqueuer
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job
from pgqueuer.queries import Queries

from bench.harness import Running, count_is_zero, libpq_url, poll_connection, spawn, stop

ENTRYPOINT = "noop"


@asynccontextmanager
async def create_pgqueuer() -> AsyncIterator[PgQueuer]:
    """The worker's factory. PgQueuer 1.6 wants an async context manager here (a plain
    coroutine, as its README still shows, is refused at start)."""
    connection = await asyncpg.connect(os.environ["BENCH_DSN"])
    try:
        pgq = PgQueuer(AsyncpgDriver(connection))

        @pgq.entrypoint(ENTRYPOINT)
        async def noop(job: Job) -> None:
            return None

        yield pgq
    finally:
        await connection.close()


async def _install(dsn: str) -> str:
    """Install the schema as ``pgq install`` does; the queue table's qualified name."""
    connection = await asyncpg.connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(connection))
        await queries.install()
        return queries.qbe.settings.qualified.queue_table
    finally:
        await connection.close()


async def _enqueue(dsn: str, count: int, batch: int) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(connection))
        for first in range(0, count, batch):
            size = min(batch, count - first)
            await queries.enqueue([ENTRYPOINT] * size, [None] * size, [0] * size)
    finally:
        await connection.close()


@contextmanager
def pgqueuer_workers(
    database_url: str, env: dict[str, str], processes: int, logs: Path, *, batch: int
) -> Iterator[Running]:
    """``processes`` PgQueuer workers on a fresh database; done when its queue table is empty
    (PgQueuer deletes a job from it as it logs the job's outcome)."""
    dsn = libpq_url(database_url)
    table = asyncio.run(_install(dsn))
    workers = [
        spawn(["-m", "bench.peer_pgqueuer"], {**env, "BENCH_DSN": dsn}, logs / f"pgqueuer-{n}.log")
        for n in range(processes)
    ]
    try:
        with poll_connection(database_url) as (conn, backend):
            yield Running(
                lambda count: asyncio.run(_enqueue(dsn, count, batch)),
                count_is_zero(conn, f"SELECT count(*) FROM {table}"),
                workers,
                backend,
            )
    finally:
        for worker in workers:
            stop(worker)


if __name__ == "__main__":
    asyncio.run(pgqueuer.run(create_pgqueuer))
