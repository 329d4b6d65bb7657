"""Jobs accepted per second: through the REST batch endpoint and through transactional enqueue,
against a bare INSERT of the same rows into the same ``jobs`` table.

Accepting a job costs more than storing its row: the engine also writes the job's history rows
(``pending``, ``scheduled``) and their outbox events, and the API adds authentication, JSON both
ways and the publish after commit. This puts a number on each against the floor:

* ``api_batch``: ``JobEngineClient.create_many`` against a real uvicorn server (a separate
  process, on loopback), batches of ``--batch-size``; the server stores them in one statement
  and publishes them to a real (embedded) Redis after commit;
* ``enqueue``: ``enqueue_many`` in a SQLAlchemy Session, one transaction per batch, no publish
  (as a producer's own transaction does it);
* ``bare_insert``: plain psycopg, one ``INSERT ... SELECT FROM unnest(...)`` of the same rows
  per batch and transaction: no history, no outbox.

The order of modes flips every round, and every run starts from an emptied, vacuumed table.
Prints figures, never passes or fails; the last line is JSON.

Usage: python bench/submit.py [--jobs N] [--batch-size B] [--rounds R]
Without JOBENGINE_DATABASE_URL it starts a private Postgres and stops it at the end; with it,
it creates and uses a ``jobengine_bench`` database on that server. Redis is always private.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psycopg
from sqlalchemy.orm import Session

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.transitions import bench_database, libpq_url  # noqa: E402
from config.logging import configure_logging  # noqa: E402
from jobengine.client import JobEngineClient, JobRequest  # noqa: E402
from jobengine.domain.job import NewJob  # noqa: E402
from jobengine.embedded import EmbeddedRedis, free_loopback_port  # noqa: E402
from jobengine.enqueue import enqueue_many  # noqa: E402
from jobengine.services import masked_url, upgrade_database  # noqa: E402
from jobengine.store.database import make_engine  # noqa: E402

API, ENQUEUE, BARE = "api_batch", "enqueue", "bare_insert"
MODES = (API, ENQUEUE, BARE)
TENANT, PROJECT, TYPE = "bench", "bench", "noop"

BARE_INSERT = """
INSERT INTO jobs (tenant_id, project_id, type, queue, priority, payload, status, scheduled_at)
SELECT %(tenant)s, %(project)s, %(type)s, 'default', 0, p, 'scheduled', now()
FROM unnest(%(payloads)s::jsonb[]) AS p
"""

Submit = Callable[[int], None]
"""Accepts one batch of jobs numbered from the given start."""


def payload(n: int) -> dict[str, int]:
    return {"n": n}


def _api_runner(client: JobEngineClient, size: int) -> Submit:
    def submit(start: int) -> None:
        jobs = client.create_many(
            [
                JobRequest(type=TYPE, project_id=PROJECT, payload=payload(n))
                for n in range(start, start + size)
            ]
        )
        assert len(jobs) == size

    return submit


def _enqueue_runner(url: str, size: int) -> tuple[Submit, Callable[[], None]]:
    engine = make_engine(url, pool_size=1, max_overflow=0)

    def submit(start: int) -> None:
        batch = [
            NewJob(type=TYPE, tenant_id=TENANT, project_id=PROJECT, payload=payload(n))
            for n in range(start, start + size)
        ]
        with Session(engine) as session:
            enqueue_many(session, batch)
            session.commit()

    return submit, engine.dispose


def _bare_runner(url: str, size: int) -> tuple[Submit, Callable[[], None]]:
    conn = psycopg.connect(libpq_url(url))

    def submit(start: int) -> None:
        payloads = [json.dumps(payload(n)) for n in range(start, start + size)]
        with conn.cursor() as cur:
            cur.execute(
                BARE_INSERT,
                {"tenant": TENANT, "project": PROJECT, "type": TYPE, "payloads": payloads},
            )
        conn.commit()

    return submit, conn.close


def _reset(url: str) -> None:
    """Equal starting conditions: no rows and no dead row versions left by the previous run."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("TRUNCATE jobs, job_history, job_events CASCADE")
        conn.execute("VACUUM ANALYZE jobs")


def run_once(submit: Submit, url: str, jobs: int, size: int) -> float:
    """Jobs per second of ``submit`` over ``jobs`` jobs, after one batch of warm-up."""
    _reset(url)
    submit(0)
    started = time.perf_counter()
    for start in range(size, size + jobs, size):
        submit(start)
    return jobs / (time.perf_counter() - started)


@contextmanager
def api_server(url: str, broker_url: str, logs: Path) -> Iterator[tuple[str, str]]:
    """``python -m jobengine.api`` (uvicorn) on a free loopback port; yields (base URL, API key)."""
    from jobengine.api.keys import ADMIN, ApiKeyStore
    from jobengine.store.database import transaction

    engine = make_engine(url, pool_size=1, max_overflow=0)
    with transaction(engine) as conn:
        key = ApiKeyStore(conn).create(TENANT, "bench", [ADMIN]).plaintext
    engine.dispose()
    port = free_loopback_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
    env.update(
        JOBENGINE_DATABASE_URL=url,
        JOBENGINE_BROKER_URL=broker_url,
        JOBENGINE_LOG_LEVEL="WARNING",
        JOBENGINE_API_HOST="127.0.0.1",
        JOBENGINE_API_PORT=str(port),
        PYTHONPATH=str(REPO),
    )
    argv = [sys.executable, "-m", "jobengine.api"]
    with (logs / "uvicorn.log").open("wb") as log:
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, proc, logs / "uvicorn.log")
        yield base, key
    finally:
        proc.terminate()
        proc.wait(15)


def _wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the API server exited:\n{log.read_text(errors='replace')}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the API server did not answer within 60 s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=20000, help="jobs per timed run")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2, help="runs per mode")
    args = parser.parse_args(argv)
    jobs = args.jobs - args.jobs % args.batch_size or args.batch_size
    configure_logging("WARNING")  # stdout carries only the figures

    totals = {mode: [0.0, 0.0] for mode in MODES}  # jobs, seconds
    with (
        bench_database() as url,
        tempfile.TemporaryDirectory(prefix="jobengine-bench-") as tmp,
    ):
        upgrade_database(url, "head")
        redis = EmbeddedRedis(Path(tmp) / "redis")
        broker_url = redis.start()
        print(f"database: {masked_url(url)}")
        print(f"each run: {jobs} jobs in batches of {args.batch_size}, after one warm-up batch")
        try:
            with api_server(url, broker_url, Path(tmp)) as (base, key):
                client = JobEngineClient(base, api_key=key, tenant_id=TENANT, timeout=60)
                enqueue_submit, enqueue_close = _enqueue_runner(url, args.batch_size)
                bare_submit, bare_close = _bare_runner(url, args.batch_size)
                runners = {
                    API: _api_runner(client, args.batch_size),
                    ENQUEUE: enqueue_submit,
                    BARE: bare_submit,
                }
                try:
                    for round_ in range(args.rounds):
                        for mode in MODES if round_ % 2 == 0 else MODES[::-1]:
                            rate = run_once(runners[mode], url, jobs, args.batch_size)
                            totals[mode][0] += jobs
                            totals[mode][1] += jobs / rate
                            print(f"  round={round_ + 1} {mode:12s} {rate:10.1f} jobs/s")
                finally:
                    client.close()
                    enqueue_close()
                    bare_close()
        finally:
            _reset(url)
            redis.stop()

    rate = {mode: totals[mode][0] / totals[mode][1] for mode in MODES}
    print(
        f"api batch {rate[API]:.1f} jobs/s (ratio {rate[API] / rate[BARE]:.3f}), "
        f"enqueue {rate[ENQUEUE]:.1f} jobs/s (ratio {rate[ENQUEUE] / rate[BARE]:.3f}), "
        f"bare INSERT {rate[BARE]:.1f} jobs/s"
    )
    print(
        json.dumps(
            {
                "bench": "submit",
                "jobs": jobs,
                "batch_size": args.batch_size,
                "api_batch_jobs_per_s": round(rate[API], 1),
                "enqueue_jobs_per_s": round(rate[ENQUEUE], 1),
                "bare_insert_jobs_per_s": round(rate[BARE], 1),
                "api_ratio": round(rate[API] / rate[BARE], 3),
                "enqueue_ratio": round(rate[ENQUEUE] / rate[BARE], 3),
            },
            separators=(",", ":"),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
