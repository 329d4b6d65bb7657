"""What quotas and fair shares cost, in one run: one JSON line at the end.

* Submission: one job per transaction through ``submission.submit``, for a tenant without a
  quota, and for a tenant with a quota while it has 5,000 and 100,000 jobs queued (the
  locked count of ``jobengine.quotas.admission``), as µs per submission.
* Throughput of a single-tenant queue of no-op jobs, submitted→completed (one prefork worker,
  ``-c N``, and a reaper): fair sharing off (chunked as usual, and one job per message), and
  on with windows of 8, 32 and 100 jobs in flight (the leader fills it every 20 ms; a
  window of two chunks or more goes out in chunks, ``JOBENGINE_DISPATCH_CHUNK_SIZE``).

Prints figures, never passes or fails; the ratios are fair-on against fair-off with one job
per message (what the fill publishes in a window under two chunks).
Usage: python bench/quotas.py [--jobs N] [--submissions N] [--small-backlog N]
[--large-backlog N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Engine, text

from bench.celery_systems import jobengine, worker_env
from bench.harness import measure_backlog, postmaster_pid, spawn, stop
from config.settings import Settings
from jobengine.domain.job import NewJob
from jobengine.embedded import EmbeddedPostgres, EmbeddedRedis
from jobengine.quotas.book import Quota, QuotaRepository
from jobengine.store import migrate
from jobengine.store.database import make_engine, transaction
from jobengine.submission import submit


def submit_us(engine: Engine, tenant: str, submissions: int) -> float:
    started = time.perf_counter()
    for _ in range(submissions):
        with transaction(engine) as conn:
            submit(conn, NewJob(type="noop", tenant_id=tenant))
    return (time.perf_counter() - started) * 1e6 / submissions


def backlog(engine: Engine, tenant: str, n: int) -> None:
    with transaction(engine) as conn:
        conn.execute(
            text(
                "INSERT INTO jobs (tenant_id, project_id, type, queue, priority, payload, status,"
                " scheduled_at) SELECT :t, 'p', 'noop', 'elsewhere', 0, '{}', 'scheduled', now()"
                " FROM generate_series(1, :n)"
            ),
            {"t": tenant, "n": n},
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE jobs"))


def submission_costs(url: str, submissions: int, backlogs: tuple[int, int]) -> dict[str, float]:
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
        with transaction(engine) as conn:
            conn.execute(text("TRUNCATE jobs, job_history, job_events CASCADE"))
            for tenant in ("q5k", "q100k"):
                QuotaRepository(conn).set(Quota(tenant, max_queued=10_000_000))
        backlog(engine, "q5k", backlogs[0])
        backlog(engine, "q100k", backlogs[1])
        submit_us(engine, "warm", submissions)
        free = submit_us(engine, "free", submissions)
        figures = {
            "submit_us_no_quota": free,
            "submit_us_quota_5k_queued": submit_us(engine, "q5k", submissions),
            "submit_us_quota_100k_queued": submit_us(engine, "q100k", submissions),
        }
        figures["quota_100k_submit_ratio"] = figures["submit_us_quota_100k_queued"] / free
        with transaction(engine) as conn:
            conn.execute(text("TRUNCATE jobs, job_history, job_events, tenant_quotas CASCADE"))
        return {k: round(v, 3 if k.endswith("ratio") else 1) for k, v in figures.items()}
    finally:
        engine.dispose()


def set_fair(url: str, window: int | None) -> None:
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
        with transaction(engine) as conn:
            repo = QuotaRepository(conn)
            if window is None:
                repo.delete_fair_queue("default")
            else:
                repo.set_fair_queue("default", window)
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=5_000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument(
        "--submissions", type=int, default=2_000, help="per measured tenant; 0: throughput only"
    )
    parser.add_argument("--small-backlog", type=int, default=5_000)
    parser.add_argument("--large-backlog", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jobengine-bench-") as tmp:
        root = Path(tmp)
        pg = EmbeddedPostgres(root / "pg")
        url = pg.start()
        postmaster = postmaster_pid(pg)
        broker = EmbeddedRedis(root / "redis")
        broker_url = broker.start()
        try:
            costs = (
                submission_costs(url, args.submissions, (args.small_backlog, args.large_backlog))
                if args.submissions
                else {}
            )
            for name, us in costs.items():
                print(f"{name}: {us:,.1f} µs")
            env = worker_env(url, broker_url, 1, False)
            reaper_env = {**env, "JOBENGINE_REAPER_INTERVAL_SECONDS": "1"}
            reaper = spawn(
                ["-c", "from jobengine.fleet import run_reaper; run_reaper()"],
                reaper_env,
                root / "reaper.log",
            )
            rates: dict[str, float] = {}
            try:
                modes = (
                    ("fair_off", Settings().dispatch_chunk_size, None),
                    ("fair_off_one_per_message", 1, None),
                    ("fair_on_window_8", 1, 8),
                    ("fair_on_window_32", 1, 32),
                    ("fair_on_window_100_chunked", 1, 100),
                )
                for name, chunk, window in modes:
                    set_fair(url, window)
                    time.sleep(3)  # let every process's cached copy expire (2 s)
                    with jobengine(
                        url, env, args.concurrency, root, chunk_size=chunk, batch=500
                    ) as started:
                        figures = measure_backlog(name, started.running, args.jobs, postmaster)
                    print(figures.line())
                    rates[f"{name}_jobs_per_s"] = round(figures.jobs_per_s, 1)
            finally:
                stop(reaper)
            off = rates["fair_off_one_per_message_jobs_per_s"]
            ratios = {
                f"{name}_ratio": round(rates[f"{name}_jobs_per_s"] / off, 3)
                for name in ("fair_on_window_8", "fair_on_window_32")
            }
            print(
                json.dumps(
                    {"bench": "quotas", "jobs": args.jobs, "concurrency": args.concurrency}
                    | costs
                    | rates
                    | ratios
                )
            )
        finally:
            broker.stop()
            pg.stop()


if __name__ == "__main__":
    main()
