"""jobengine through PgBouncer in transaction mode, against the direct connection a user has
without one, side by side in one run.

The same backlog of no-op jobs (one prefork worker, ``-c N``; the same private Postgres and
Redis; a fresh database each) three ways:

* ``direct``: no pooler, the default settings (per-job statements prepared on the server);
* ``direct_unprepared``: no pooler, ``JOBENGINE_DB_POOLER=transaction``: the setting's own
  cost (every statement parsed and planned where it runs);
* ``pgbouncer``: through a real PgBouncer (``deploy/pgbouncer/pgbouncer.ini``, as
  ``tests/pgbouncer`` run it) with the setting, a pool of ``--pool-size``.

Postgres CPU per 1,000 jobs is the private server's process tree; through PgBouncer the
benchmark's completion poll reaches Postgres through it too, on whichever server connection,
so it is not left out there; PgBouncer's own CPU is reported apart. Needs the ``pgbouncer``
binary (``make pgbouncer``).

Prints human lines, then one JSON line. Usage: python bench/pgbouncer.py [--jobs N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.celery_systems import jobengine, worker_env
from bench.harness import Figures, Servers, measure_backlog, private_servers
from bench.proc_cpu import process_cpu_seconds
from config.settings import Settings, get_settings
from tests.pgbouncer.bouncer import ENGINE_DB, PgBouncer, unavailable

POOLER = "JOBENGINE_DB_POOLER"
DIRECT, UNPREPARED, BOUNCED = "direct", "direct_unprepared", "pgbouncer"


@contextmanager
def pooler_setting(value: str | None) -> Iterator[None]:
    """This process's own engines (the producer's) follow ``value`` too while it lasts."""
    os.environ.pop(POOLER, None)
    if value is not None:
        os.environ[POOLER] = value
    get_settings.cache_clear()
    try:
        yield
    finally:
        os.environ.pop(POOLER, None)
        get_settings.cache_clear()


@contextmanager
def database_for(
    mode: str, servers: Servers, pool_size: int
) -> Iterator[tuple[str, PgBouncer | None]]:
    """A fresh database for one run; the URL the fleet uses for it, and the PgBouncer in
    between for that run (None: direct)."""
    with servers.fresh_database(f"bench_{mode}") as url:
        if mode != BOUNCED:
            yield url, None
            return
        port = make_url(url).port
        assert port is not None
        pooler = PgBouncer(
            servers.root / "pgbouncer-server", port, Settings().leader_ttl_seconds,
            pool_size=pool_size, upstream_db=f"bench_{mode}",
        )  # fmt: skip
        pooler.start()
        try:
            yield pooler.url(ENGINE_DB), pooler
        finally:
            pooler.stop()


def run(mode: str, servers: Servers, args: argparse.Namespace) -> tuple[Figures, float | None]:
    """The run's figures, and PgBouncer's own CPU seconds per 1,000 jobs over the whole run
    (start, migration and warm-up included: an upper bound)."""
    setting = None if mode == DIRECT else "transaction"
    with pooler_setting(setting), database_for(mode, servers, args.pool_size) as (url, pooler):
        env = worker_env(url, servers.broker_url, 1, False)
        if setting is not None:
            env[POOLER] = setting
        logs = servers.root / mode
        logs.mkdir()
        chunk_size = Settings().dispatch_chunk_size
        with jobengine(
            url, env, args.concurrency, logs, chunk_size=chunk_size, batch=500
        ) as started:
            figures = measure_backlog(mode, started.running, args.jobs, servers.postmaster)
        if pooler is None or pooler.process is None:
            return figures, None
        return figures, process_cpu_seconds(pooler.process.pid) * 1000 / args.jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--pool-size", type=int, default=4, help="PgBouncer's default_pool_size")
    args = parser.parse_args()
    reason = unavailable()
    if reason is not None:
        raise SystemExit(reason)
    with (
        tempfile.TemporaryDirectory(prefix="jobengine-bench-pgbouncer-") as tmp,
        private_servers(Path(tmp)) as servers,
    ):
        runs = {mode: run(mode, servers, args) for mode in (DIRECT, UNPREPARED, BOUNCED)}
    figures = {mode: one for mode, (one, _) in runs.items()}
    pooler_cpu = runs[BOUNCED][1]
    for one in figures.values():
        print(one.line())
    print(f"PgBouncer's own CPU: {pooler_cpu or 0:.2f} s per 1,000 jobs (whole run)")
    direct = figures[DIRECT].jobs_per_s
    line: dict[str, object] = {
        "bench": "pgbouncer",
        "jobs": args.jobs,
        "concurrency": args.concurrency,
        "pool_size": args.pool_size,
    }
    for mode, one in figures.items():
        pg = one.postgres_cpu_per_1k
        line[f"{mode}_jobs_per_s"] = round(one.jobs_per_s, 1)
        line[f"{mode}_worker_cpu_s_per_1k"] = round(one.worker_cpu_per_1k, 3)
        line[f"{mode}_postgres_cpu_s_per_1k"] = None if pg is None else round(pg, 3)
        line[f"{mode}_ratio"] = round(one.jobs_per_s / direct, 3)
    line["pgbouncer_own_cpu_s_per_1k"] = None if pooler_cpu is None else round(pooler_cpu, 3)
    print(json.dumps(line))


if __name__ == "__main__":
    main()
