"""No-op jobs per second from submission to ``completed`` in Postgres, against bare Celery.

Both sides run in the same run on the same embedded Redis with the same Celery settings
(``acks_late``, prefetch, events) and the same prefork concurrency; the producer publishes
while the workers drain, as in production. Bare Celery is "done" when its queue and its
unacknowledged set are empty; jobengine is done when every job is ``completed`` in Postgres.
Latency is submit → running on an idle fleet, from Postgres timestamps. CPU per 1,000 jobs
is the worker's process tree and, on the private server, Postgres's (``bench/proc_cpu.py``);
with ``JOBENGINE_DATABASE_URL`` set the server may be elsewhere and its CPU is not reported.

Prints human lines, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.celery_systems import (
    bare_celery_with_jobengine_settings,
    jobengine,
    worker_env,
)
from bench.harness import Figures, measure_backlog, postmaster_pid, wait_for
from config.settings import Settings
from jobengine.embedded import EmbeddedPostgres, EmbeddedRedis


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cpu_keys(prefix: str, figures: Figures) -> dict[str, float | None]:
    pg = figures.postgres_cpu_per_1k
    return {
        f"{prefix}_worker_cpu_s_per_1k": round(figures.worker_cpu_per_1k, 3),
        f"{prefix}_postgres_cpu_s_per_1k": None if pg is None else round(pg, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--prefetch", type=int, default=1, help="worker_prefetch_multiplier")
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=Settings().dispatch_chunk_size,
        help="jobs per message in a backlog; 1: no chunks",
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
        postmaster = None if pg is None else postmaster_pid(pg)
        broker = EmbeddedRedis(root / "redis")
        broker_url = broker.start()
        try:
            env = worker_env(url, broker_url, args.prefetch, args.task_events)
            settings = Settings(database_url=url, broker_url=broker_url)
            with bare_celery_with_jobengine_settings(
                settings, env, args.concurrency, root
            ) as running:
                bare = measure_backlog("bare celery", running, args.jobs, postmaster)
            print(
                f"bare celery: {bare.jobs_per_s:,.0f} tasks/s ({args.jobs} no-op tasks, "
                f"-c {args.concurrency}); worker CPU {bare.worker_cpu_per_1k:.2f} s per 1,000"
            )
            with jobengine(
                url, env, args.concurrency, root, chunk_size=args.chunk_size, batch=args.batch
            ) as started:
                started.running.submit(50)
                wait_for(started.running.done, 180, "50 warm-up jobs done", started.running.workers)
                latencies = started.latencies_ms(100)
                ours = measure_backlog("jobengine", started.running, args.jobs, postmaster)
            pg_cpu = ours.postgres_cpu_per_1k
            print(
                f"jobengine:   {ours.jobs_per_s:,.0f} jobs/s submitted→completed "
                f"({args.jobs} jobs); CPU s per 1,000 jobs: "
                f"worker {ours.worker_cpu_per_1k:.2f}, Postgres "
                + ("not measured (external server)" if pg_cpu is None else f"{pg_cpu:.2f}")
            )
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
                        "jobengine_jobs_per_s": round(ours.jobs_per_s, 1),
                        "celery_jobs_per_s": round(bare.jobs_per_s, 1),
                        "ratio": round(ours.jobs_per_s / bare.jobs_per_s, 3),
                        "latency_p50_ms": round(p50, 2),
                        "latency_p99_ms": round(p99, 2),
                        "latency_mean_ms": round(statistics.fmean(latencies), 2),
                        **cpu_keys("jobengine", ours),
                        "celery_worker_cpu_s_per_1k": round(bare.worker_cpu_per_1k, 3),
                    }
                )
            )
        finally:
            broker.stop()
            if pg is not None:
                pg.stop()


if __name__ == "__main__":
    main()
