"""Where one job per message spends its time, against bare Celery with the same settings.

Issue 12 asks for one job per message at 0.7 of bare Celery with jobengine's Celery settings
and, if that cannot be reached, for the resource that runs out first. This runs both on the
same private Postgres and Redis as ``bench/peers.py`` does (same starters, same backlog, same
concurrency) and splits each run three ways:

* **CPU by part**, read from ``/proc`` for the timed window: the Celery consumer (main
  process), the pool processes' task threads, their other threads (jobengine's completer and
  heartbeat), Postgres (less the benchmark's polling backend), Redis and the benchmark itself
  (its producer and its poll), in ms per job, their total per job, and the cores they kept
  busy: when both systems keep the same share of the machine busy, the ratio of their rates
  is the inverse of the ratio of their totals;
* **fsync**: jobengine again with the server's ``synchronous_commit`` off, everything else the
  same: if the rate hardly moves, waiting for the WAL flush is not what bounds it;
* **the claim**: ``Executor.claim`` and a one-job ``complete_many`` timed in this process on a
  quiet server (wall and the calling thread's CPU, medians): the claim is the round trip each
  pool process makes between receiving a message and running its handler, which bare Celery
  does not make.

A pool process runs one job at a time, so ``cycle`` (concurrency ÷ jobs/s) is the time each
spends per job: receiving the message from the consumer, claiming, running, handing back
the result. Systems alternate in order every round; medians are reported. Prints human lines,
then one JSON line.

Usage: python bench/one_per_message.py [--jobs 10000] [-c 2] [--rounds 2] [--claims 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import (
    BenchmarkError,
    Figures,
    Running,
    Servers,
    libpq_url,
    measure_backlog,
    private_servers,
)
from bench.peers import SYSTEMS, Plan
from bench.proc_cpu import prefork_cpu_seconds, process_cpu_seconds, tree_cpu_seconds
from jobengine import guard
from jobengine.domain.job import NewJob
from jobengine.execution import Executor
from jobengine.store import migrate
from jobengine.store.database import SharedConnection, make_engine, unpooled_engine

BARE = "celery-jobengine-settings"
ONE = "jobengine-one-per-message"
ASYNC = f"{ONE}, synchronous_commit off"
VARIANTS = {BARE: (BARE, "bare"), ONE: (ONE, "one"), ASYNC: (ONE, "one_unsynced")}
"""Each run's label → the ``bench/peers.py`` system it starts, and a name for its files."""


def _parts(servers: Servers, running: Running) -> Callable[[], dict[str, float]]:
    root = running.workers[0].proc.pid
    poll = [] if running.poll_backend is None else [running.poll_backend]

    def read() -> dict[str, float]:
        own = os.times()
        return {
            **prefork_cpu_seconds(root),
            "postgres": tree_cpu_seconds([servers.postmaster], poll),
            "redis": 0.0 if servers.broker_pid is None else process_cpu_seconds(servers.broker_pid),
            "benchmark (producer, poll)": own.user
            + own.system
            + sum(process_cpu_seconds(pid) for pid in poll),
        }

    return read


@contextmanager
def synchronous_commit(servers: Servers, value: str) -> Iterator[None]:
    """The server's ``synchronous_commit`` set to ``value`` for the block, reset after."""

    def apply(sql: str) -> None:
        with psycopg.connect(libpq_url(servers.admin_url), autocommit=True) as conn:
            conn.execute(sql)
            conn.execute("SELECT pg_reload_conf()")

    apply(f"ALTER SYSTEM SET synchronous_commit = {value}")
    try:
        yield
    finally:
        apply("ALTER SYSTEM RESET synchronous_commit")


def run_one(servers: Servers, plan: Plan, label: str, round_no: int) -> tuple[Figures, str]:
    """One timed backlog of ``label``, and the server's ``synchronous_commit`` during it."""
    name, slug = VARIANTS[label]
    start, in_postgres, _ = SYSTEMS[name]
    logs = servers.root / "logs" / f"{round_no}-{slug}"
    logs.mkdir(parents=True)
    database: AbstractContextManager[str] = (
        servers.fresh_database(f"bench_opm_{slug}_{round_no}")
        if in_postgres
        else nullcontext(servers.admin_url)
    )
    setting = synchronous_commit(servers, "off") if label == ASYNC else nullcontext()
    with setting, database as url, start(servers, plan, url, logs) as running:
        figures = measure_backlog(
            label, running, plan.jobs, servers.postmaster, parts=_parts(servers, running)
        )
        return figures, servers.settings()["synchronous_commit"]


def time_claims(servers: Servers, claims: int) -> dict[str, dict[str, float]]:
    """Median wall and thread-CPU ms of ``Executor.claim`` and of a one-job ``complete_many``,
    each job claimed then completed, on an otherwise quiet database."""
    with servers.fresh_database("bench_opm_claims") as url:
        engine = make_engine(url, pool_size=1, max_overflow=0)
        try:
            migrate.upgrade(engine)
            with engine.begin() as conn:
                ids = [j.id for j in guard.create_jobs(conn, [NewJob(type="noop")] * claims)]
        finally:
            engine.dispose()
        worker_engine = unpooled_engine(url, application_name="bench-claims")
        executor = Executor(
            worker_engine, lease_ttl_seconds=30, connection=SharedConnection(worker_engine)
        )
        samples: dict[str, list[tuple[float, float]]] = {"claim": [], "complete one": []}
        try:
            for job_id in ids:
                wall, cpu = time.perf_counter(), time.thread_time()
                claim = executor.claim(job_id, "bench-claims")
                samples["claim"].append((time.perf_counter() - wall, time.thread_time() - cpu))
                if claim is None:
                    raise BenchmarkError(f"job {job_id} could not be claimed")
                wall, cpu = time.perf_counter(), time.thread_time()
                executor.complete_many([(claim, None)])
                samples["complete one"].append(
                    (time.perf_counter() - wall, time.thread_time() - cpu)
                )
        finally:
            executor.connection.drop()
            worker_engine.dispose()
    return {
        op: {
            "wall_ms": round(statistics.median(w for w, _ in found) * 1000, 3),
            "cpu_ms": round(statistics.median(c for _, c in found) * 1000, 3),
        }
        for op, found in samples.items()
    }


def median_rate(runs: list[Figures]) -> float:
    return round(statistics.median(r.jobs_per_s for r in runs), 1)


def summary(runs: list[Figures], concurrency: int) -> dict[str, object]:
    rate = median_rate(runs)
    parts = {
        part: round(statistics.median(r.parts_cpu_s[part] * 1000 / r.jobs for r in runs), 3)
        for part in runs[0].parts_cpu_s
    }
    cores = statistics.median(sum(r.parts_cpu_s.values()) / r.seconds for r in runs)
    total = statistics.median(sum(r.parts_cpu_s.values()) * 1000 / r.jobs for r in runs)
    return {
        "jobs_per_s": rate,
        "cycle_ms": round(concurrency * 1000 / rate, 3),
        "cores_used": round(cores, 2),
        "cpu_ms_per_job": parts,
        "cpu_ms_per_job_total": round(total, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("-c", "--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--claims", type=int, default=2_000, help="claims timed in-process")
    args = parser.parse_args()
    plan = Plan(args.jobs, args.concurrency, 1, 500, 1, False)
    labels = list(VARIANTS)
    runs: dict[str, list[Figures]] = {label: [] for label in labels}
    commit_setting: dict[str, str] = {}
    with (
        tempfile.TemporaryDirectory(prefix="jobengine-opm-") as tmp,
        private_servers(Path(tmp)) as servers,
    ):
        print(
            f"one job per message: {plan.jobs:,} no-op jobs as a backlog, concurrency "
            f"{plan.concurrency}, prefetch 1, {args.rounds} round(s), {os.cpu_count()} cores"
        )
        for round_no in range(args.rounds):
            for label in labels if round_no % 2 == 0 else labels[::-1]:
                figures, commit_setting[label] = run_one(servers, plan, label, round_no)
                runs[label].append(figures)
                print(f"round {round_no + 1}: {label:<44} {figures.jobs_per_s:>8,.1f} jobs/s")
        claims = time_claims(servers, args.claims)
    systems = {
        label: {**summary(found, plan.concurrency), "synchronous_commit": commit_setting[label]}
        for label, found in runs.items()
    }
    for label, s in systems.items():
        print(
            f"{label}: {s['jobs_per_s']:,} jobs/s, cycle {s['cycle_ms']} ms a job per pool "
            f"process, {s['cores_used']} of {os.cpu_count()} cores"
        )
        parts = s["cpu_ms_per_job"]
        assert isinstance(parts, dict)
        print(
            f"  CPU ms per job {s['cpu_ms_per_job_total']}: "
            + ", ".join(f"{k} {v:.3f}" for k, v in parts.items())
        )
    for op, t in claims.items():
        print(f"in-process {op}: {t['wall_ms']} ms wall, {t['cpu_ms']} ms of the caller's CPU")
    ratio = {
        label: round(median_rate(runs[label]) / median_rate(runs[BARE]), 3)
        for label in (ONE, ASYNC)
    }
    print(f"ratio to {BARE}: " + ", ".join(f"{k} {v}" for k, v in ratio.items()))
    print(
        json.dumps(
            {
                "bench": "one_per_message",
                "jobs": plan.jobs,
                "concurrency": plan.concurrency,
                "rounds": args.rounds,
                "cores": os.cpu_count(),
                "systems": systems,
                "ratio_to_bare_celery": ratio,
                "in_process": claims,
            }
        )
    )


if __name__ == "__main__":
    try:
        main()
    except BenchmarkError as error:
        sys.exit(f"one_per_message: {error}")
