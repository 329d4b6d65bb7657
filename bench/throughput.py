"""No-op jobs per second from submission to ``completed`` in Postgres, against bare Celery.

Both sides run in the same run on the same embedded Redis with the same Celery settings
(``acks_late``, prefetch, events) and the same prefork concurrency; the producer publishes
while the workers drain, as in production. Bare Celery is "done" when its queue and its
unacknowledged set are empty; jobengine is done when every job is ``completed`` in Postgres.
Latency is submit → running on an idle fleet, from Postgres timestamps.

Prints human lines, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import Engine, text

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from config.settings import Settings  # noqa: E402
from jobengine.domain.job import NewJob  # noqa: E402
from jobengine.embedded import EmbeddedPostgres, EmbeddedRedis  # noqa: E402
from jobengine.fleet import make_publisher, publisher_app  # noqa: E402
from jobengine.producer import submit_jobs  # noqa: E402
from jobengine.store import migrate  # noqa: E402
from jobengine.store.database import make_engine  # noqa: E402


def wait_for(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark did not finish in time")
        time.sleep(0.02)


def start_worker(
    app: str, env: dict[str, str], concurrency: int, log: Path
) -> subprocess.Popen[bytes]:
    """A worker of ``app``; task events follow ``JOBENGINE_TASK_EVENTS`` in ``env`` on both
    sides, since bare Celery's app is configured from the same settings."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            app,
            "worker",
            "-P",
            "prefork",
            "-c",
            str(concurrency),
            "-Q",
            "default",
            "--without-mingle",
            "--without-gossip",
            "-l",
            "WARNING",
        ],
        cwd=REPO,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def broker_drained(client: redis.Redis) -> bool:
    waiting = sum(client.llen(k) for k in client.keys("default*"))
    return waiting == 0 and client.hlen("unacked") == 0


def warm_up_bare(client: redis.Redis, app: Any) -> None:
    for _ in range(50):
        app.send_task("bench.noop", queue="default")
    wait_for(lambda: broker_drained(client), 120)


def bench_bare(broker_url: str, env: dict[str, str], jobs: int, conc: int, logs: Path) -> float:
    client = redis.Redis.from_url(broker_url)
    client.flushall()
    worker = start_worker(
        "bench.bare_celery_app", {**env, "BENCH_BROKER_URL": broker_url}, conc, logs / "bare.log"
    )
    try:
        app = publisher_app(Settings(), broker_url)
        warm_up_bare(client, app)
        started = time.perf_counter()
        for _ in range(jobs):
            app.send_task("bench.noop", queue="default")
        wait_for(lambda: broker_drained(client), 600)
        return jobs / (time.perf_counter() - started)
    finally:
        stop(worker)


def count_open(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(text("SELECT count(*) FROM jobs WHERE status <> 'completed'")).scalar_one()
        )


def bench_engine(
    engine: Engine,
    settings: Settings,
    broker_url: str,
    env: dict[str, str],
    jobs: int,
    conc: int,
    batch: int,
    logs: Path,
    chunk: int,
) -> tuple[float, list[float]]:
    redis.Redis.from_url(broker_url).flushall()
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE jobs CASCADE"))
    worker = start_worker("workers.app", env, conc, logs / "jobengine.log")
    publisher = make_publisher(settings, broker_url)
    try:
        submit_jobs(engine, publisher, [NewJob(type="noop") for _ in range(50)])
        wait_for(lambda: count_open(engine) == 0, 120)
        latencies = []
        for _ in range(100):
            [job] = submit_jobs(engine, publisher, [NewJob(type="noop")])
            wait_for(lambda: count_open(engine) == 0, 60)
            with engine.connect() as conn:
                started_at, created_at = conn.execute(
                    text("SELECT started_at, created_at FROM jobs WHERE id = :i"), {"i": job.id}
                ).one()
            latencies.append((started_at - created_at).total_seconds() * 1000)
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE jobs CASCADE"))
        started = time.perf_counter()
        for first in range(0, jobs, batch):
            size = min(batch, jobs - first)
            submit_jobs(
                engine, publisher, [NewJob(type="noop") for _ in range(size)], chunk_size=chunk
            )
        wait_for(lambda: count_open(engine) == 0, 900)
        return jobs / (time.perf_counter() - started), latencies
    finally:
        stop(worker)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--prefetch", type=int, default=1, help="worker_prefetch_multiplier")
    parser.add_argument(
        "--chunk-size", type=int, default=10, help="jobs per message in a backlog; 1: no chunks"
    )
    parser.add_argument(
        "--task-events",
        action="store_true",
        help="Celery task events on for both sides (as with Flower); off is the default",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="jobengine-bench-") as tmp:
        root = Path(tmp)
        database_url = os.environ.get("JOBENGINE_DATABASE_URL")
        pg = None if database_url else EmbeddedPostgres(root / "pg")
        url = database_url or pg.start()  # type: ignore[union-attr]
        broker = EmbeddedRedis(root / "redis")
        broker_url = broker.start()
        engine = make_engine(url)
        try:
            migrate.upgrade(engine)
            settings = Settings(database_url=url, broker_url=broker_url)
            env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
            env.update(
                JOBENGINE_DATABASE_URL=url,
                JOBENGINE_BROKER_URL=broker_url,
                JOBENGINE_LOG_LEVEL="WARNING",
                JOBENGINE_WORKER_PREFETCH_MULTIPLIER=str(args.prefetch),
                JOBENGINE_TASK_EVENTS=str(args.task_events).lower(),
                PYTHONPATH=str(REPO),
            )
            bare = bench_bare(broker_url, env, args.jobs, args.concurrency, root)
            print(
                f"bare celery: {bare:,.0f} tasks/s ({args.jobs} no-op tasks, -c {args.concurrency})"
            )
            ours, latencies = bench_engine(
                engine,
                settings,
                broker_url,
                env,
                args.jobs,
                args.concurrency,
                args.batch,
                root,
                args.chunk_size,
            )
            print(f"jobengine:   {ours:,.0f} jobs/s submitted→completed ({args.jobs} jobs)")
            p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
            print(f"latency submit→running on an idle fleet: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
            print(
                json.dumps(
                    {
                        "bench": "throughput",
                        "jobs": args.jobs,
                        "concurrency": args.concurrency,
                        "prefetch_multiplier": args.prefetch,
                        "chunk_size": args.chunk_size,
                        "task_events": args.task_events,
                        "jobengine_jobs_per_s": round(ours, 1),
                        "celery_jobs_per_s": round(bare, 1),
                        "ratio": round(ours / bare, 3),
                        "latency_p50_ms": round(p50, 2),
                        "latency_p99_ms": round(p99, 2),
                        "latency_mean_ms": round(statistics.fmean(latencies), 2),
                    }
                )
            )
        finally:
            engine.dispose()
            broker.stop()
            if pg is not None:
                pg.stop()


if __name__ == "__main__":
    main()
