"""Throughput and claim latency as worker processes are added: 2, 4 and 8 on this machine.

For each process count, one prefork worker (``-c N``) drains a backlog of no-op jobs, one job
per message by default so that every job is a claim; bare Celery with its defaults (what a
user would pick instead) drains the same number of no-op tasks at the same ``-c``, on the same
private Postgres and Redis, in the same run. Claim latency is a timer around every claim in the
worker (``bench/scale_worker_app.py``: the admission's wait, the statement and its retries;
the 50 warm-up jobs' claims included).
While jobengine runs, Postgres is sampled every 0.1 s: its client connections, those active,
and those waiting on a lock (``pg_stat_activity``), to show whether it stayed healthy; the
number of times a worker's claim admission slowed down is counted from the workers' logs.

On a 2-core machine 8 processes oversubscribe the CPU; that is the point. Prints human lines,
then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

from bench.celery_systems import bare_celery_with_celery_defaults, jobengine, worker_env
from bench.harness import Servers, libpq_url, measure_backlog, private_servers

ACTIVITY = """
SELECT count(*),
       count(*) FILTER (WHERE state = 'active'),
       count(*) FILTER (WHERE wait_event_type = 'Lock')
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
"""


@dataclass
class Activity:
    samples: list[tuple[int, int, int]] = field(default_factory=list)

    def figures(self) -> dict[str, float]:
        if not self.samples:
            return {}
        conns, active, locks = zip(*self.samples, strict=True)
        return {
            "pg_connections_max": max(conns),
            "pg_active_mean": round(statistics.fmean(active), 2),
            "pg_lock_waits_max": max(locks),
            "pg_lock_wait_share": round(sum(1 for n in locks if n) / len(locks), 3),
        }


@contextmanager
def sampled(url: str) -> Iterator[Activity]:
    activity = Activity()
    stop = threading.Event()

    def sample() -> None:
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            while not stop.wait(0.1):
                row = conn.execute(ACTIVITY).fetchone()
                if row is not None:
                    activity.samples.append((int(row[0]), int(row[1]), int(row[2])))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield activity
    finally:
        stop.set()
        thread.join(10)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def claim_timings(folder: Path) -> list[float]:
    return [float(line) for path in folder.glob("*.txt") for line in path.read_text().split()]


def one_count(
    servers: Servers, url: str, processes: int, args: argparse.Namespace, root: Path
) -> dict[str, float | int | None]:
    logs = root / f"c{processes}"
    timings = logs / "claims"
    timings.mkdir(parents=True)
    env = worker_env(url, servers.broker_url, 1, False)
    env["BENCH_CLAIM_TIMINGS_DIR"] = str(timings)
    env["JOBENGINE_FLEET_WORKER_CONCURRENCY"] = str(processes)
    with bare_celery_with_celery_defaults(env, processes, logs) as running:
        bare = measure_backlog("bare celery", running, args.jobs, servers.postmaster)
    with (
        jobengine(
            url,
            env,
            processes,
            logs,
            chunk_size=args.chunk_size,
            batch=args.batch,
            app_module="bench.scale_worker_app",
        ) as started,
        sampled(url) as activity,
    ):
        ours = measure_backlog("jobengine", started.running, args.jobs, servers.postmaster)
    claims = claim_timings(timings)
    slowed = (logs / "jobengine.log").read_text(errors="replace").count("claim_admission_slowed")
    row: dict[str, float | int | None] = {
        "processes": processes,
        "jobengine_jobs_per_s": round(ours.jobs_per_s, 1),
        "celery_jobs_per_s": round(bare.jobs_per_s, 1),
        "ratio": round(ours.jobs_per_s / bare.jobs_per_s, 3),
        "claims": len(claims),
        "claim_p50_ms": round(percentile(claims, 0.5) * 1000, 2) if claims else None,
        "claim_p99_ms": round(percentile(claims, 0.99) * 1000, 2) if claims else None,
        "admission_slowdowns": slowed,
        **activity.figures(),
    }
    print(
        f"-c {processes}: jobengine {row['jobengine_jobs_per_s']} jobs/s, bare Celery "
        f"{row['celery_jobs_per_s']} tasks/s (ratio {row['ratio']}); claim p50 "
        f"{row['claim_p50_ms']} ms, p99 {row['claim_p99_ms']} ms over {len(claims)} claims; "
        f"Postgres: {row.get('pg_connections_max')} connections at most, lock waits in "
        f"{row.get('pg_lock_wait_share')} of samples; admission slowed {slowed} times",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=5_000, help="per system and process count")
    parser.add_argument("--processes", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--chunk-size", type=int, default=1, help="jobs per message; 1: none")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--note", default="", help="e.g. 'shared machine' (goes in the JSON)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jobengine-scale-") as tmp:
        root = Path(tmp)
        with private_servers(root) as servers, servers.fresh_database("scale") as url:
            rows = [one_count(servers, url, n, args, root) for n in args.processes]
            server = servers.settings()
    print(
        json.dumps(
            {
                "bench": "scale",
                "jobs": args.jobs,
                "chunk_size": args.chunk_size,
                "note": args.note,
                "postgres": server,
                "runs": rows,
                "ratio": min(float(r["ratio"] or 0) for r in rows),
            }
        )
    )


if __name__ == "__main__":
    main()
