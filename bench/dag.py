"""The cost of promotion: a run's shapes against as many flat jobs, through real workers.

Three shapes, each one run submitted in one transaction, timed from the submission until
every job of it is ``completed`` in Postgres: a chain (each job the child of the one before,
so one job runs at a time and each step pays a promotion, a publish and a claim), a fan-out
(one root releasing N children in the transaction that completes it) and a fan-in (N roots,
one child released by the last of them). Each is measured against N flat jobs submitted in
batches, on the same worker, with the same chunking: the ratio is what being in a run costs.
The fan-out's aim is a ratio within 1.5. What a run adds is serial: its one submitting
transaction, and the release of a fan-out's children in the root's completion, which the
benchmark prints as ``fan_out_release_s``.

One prefork worker (``-c``) and one leading reaper (the dispatcher's safety net) run on a
private Postgres and Redis. Prints human lines, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.celery_systems import jobengine, worker_env
from bench.harness import Running, Worker, libpq_url, private_servers, spawn, stop, wait_for
from bench.proc_cpu import tree_cpu_seconds
from config.settings import Settings
from jobengine.dispatch import Publisher
from jobengine.domain.run import RunJobSpec, RunSpec
from jobengine.fleet import make_publisher
from jobengine.runs.producer import submit_run_now
from jobengine.store.database import make_engine

TIMEOUT_SECONDS = 1800

RELEASE_SQL = """
-- Seconds from the root's completion to its first child's claim, both on Postgres's clock:
-- the release (count-off and move of every child, commit, first publish) nothing overlaps.
SELECT extract(epoch FROM
           min(h.at) FILTER (WHERE j.run_key <> 'root' AND h.to_status = 'claimed')
         - min(h.at) FILTER (WHERE j.run_key = 'root' AND h.to_status = 'completed'))
FROM jobs AS j JOIN job_history AS h ON h.job_id = j.id
WHERE j.run_id = (SELECT max(id) FROM runs WHERE name = %(name)s)
"""


def chain(n: int) -> RunSpec:
    jobs = tuple(RunJobSpec(key=f"c{i}", type="noop") for i in range(n))
    edges = tuple((f"c{i}", f"c{i + 1}") for i in range(n - 1))
    return RunSpec("bench", "bench", f"chain-{n}", jobs, edges)


def fan_out(n: int) -> RunSpec:
    children = [RunJobSpec(key=f"c{i}", type="noop") for i in range(n)]
    jobs = (RunJobSpec(key="root", type="noop"), *children)
    return RunSpec("bench", "bench", f"fan-out-{n}", jobs, tuple(("root", c.key) for c in children))


def fan_in(n: int) -> RunSpec:
    parents = [RunJobSpec(key=f"p{i}", type="noop") for i in range(n)]
    jobs = (*parents, RunJobSpec(key="sink", type="noop"))
    return RunSpec("bench", "bench", f"fan-in-{n}", jobs, tuple((p.key, "sink") for p in parents))


def submit_run(
    database_url: str, publisher: Publisher, chunk_size: int
) -> Callable[[RunSpec], object]:
    """A producer's submission of a run: one transaction, then its roots to the broker."""
    engine = make_engine(database_url)
    return partial(submit_run_now, engine, publisher, actor="bench", chunk_size=chunk_size)


def timed(
    what: str, start: Callable[[], object], running: Running, cpu: Callable[[], float]
) -> tuple[float, float, float]:
    """Seconds until ``start`` returned (the submission) and until every job was done, and
    the CPU seconds every process of the system spent meanwhile: on a shared machine the
    CPU a shape costs moves far less than its wall time."""
    cpu_before = cpu()
    started = time.perf_counter()
    start()
    submitted = time.perf_counter() - started
    wait_for(running.done, TIMEOUT_SECONDS, what, running.workers)
    return submitted, time.perf_counter() - started, cpu() - cpu_before


def system_cpu(running: Running, reaper: Worker, postmaster: int) -> Callable[[], float]:
    """CPU seconds of the workers, the reaper, Postgres (but the benchmark's polling
    backend) and this process (the producer), so far."""
    roots = [w.proc.pid for w in running.workers] + [reaper.proc.pid]
    probe = [] if running.poll_backend is None else [running.poll_backend]

    def seconds() -> float:
        return tree_cpu_seconds(roots) + tree_cpu_seconds([postmaster], probe) + time.process_time()

    return seconds


def release_seconds(database_url: str, spec: RunSpec) -> float:
    with psycopg.connect(libpq_url(database_url)) as conn:
        row = conn.execute(RELEASE_SQL, {"name": spec.name}).fetchone()
    return round(float(row[0]), 3) if row and row[0] is not None else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chain", type=int, default=1_000, help="jobs in the chain")
    parser.add_argument("--fan-out", type=int, default=10_000, help="children of the root")
    parser.add_argument("--fan-in", type=int, default=10_000, help="parents of the sink")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--batch", type=int, default=500, help="flat jobs per submission")
    parser.add_argument("--chunk-size", type=int, default=Settings().dispatch_chunk_size)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="jobengine-bench-dag-") as tmp:
        root = Path(tmp)
        with private_servers(root) as servers, servers.fresh_database("dag") as url:
            env = worker_env(url, servers.broker_url, prefetch=1, task_events=False)
            with jobengine(
                url, env, args.concurrency, root, chunk_size=args.chunk_size, batch=args.batch
            ) as started:
                running = started.running
                reaper = start_reaper(env, root)
                try:
                    running.submit(50)
                    wait_for(running.done, 180, "50 warm-up jobs done", running.workers)
                    publisher = make_publisher(Settings(database_url=url), servers.broker_url)
                    submit = submit_run(url, publisher, args.chunk_size)
                    cpu = system_cpu(running, reaper, servers.postmaster)
                    figures: dict[str, float | int] = {}
                    for shape, n, spec in (
                        ("chain", args.chain, chain(args.chain)),
                        ("fan_out", args.fan_out, fan_out(args.fan_out)),
                        ("fan_in", args.fan_in, fan_in(args.fan_in)),
                    ):
                        jobs = len(spec.jobs)
                        submit_s, run_s, run_cpu = timed(
                            f"{shape} of {n} done", partial(submit, spec), running, cpu
                        )
                        _, flat_s, flat_cpu = timed(
                            f"{jobs} flat jobs done", partial(running.submit, jobs), running, cpu
                        )
                        if shape == "fan_out":
                            figures["fan_out_release_s"] = release_seconds(url, spec)
                        figures.update(
                            {
                                shape: n,
                                f"{shape}_s": round(run_s, 3),
                                f"{shape}_submit_s": round(submit_s, 3),
                                f"{shape}_flat_s": round(flat_s, 3),
                                f"{shape}_ratio": round(run_s / flat_s, 3),
                                f"{shape}_cpu_s": round(run_cpu, 3),
                                f"{shape}_flat_cpu_s": round(flat_cpu, 3),
                                f"{shape}_cpu_ratio": round(run_cpu / flat_cpu, 3),
                            }
                        )
                        print(
                            f"{shape:<8} {jobs:>6} jobs in one run: {run_s:8.2f} s"
                            f" ({submit_s:.2f} s to submit, {run_cpu:.2f} CPU s);"
                            f" as many flat jobs: {flat_s:8.2f} s ({flat_cpu:.2f} CPU s);"
                            f" ratio {run_s / flat_s:.2f} (CPU {run_cpu / flat_cpu:.2f})"
                        )
                finally:
                    stop(reaper)
    print(
        json.dumps(
            {
                "bench": "dag",
                "concurrency": args.concurrency,
                "chunk_size": args.chunk_size,
                **figures,
            }
        )
    )


def start_reaper(env: dict[str, str], logs: Path) -> Worker:
    return spawn(
        ["-c", "from jobengine.fleet import run_reaper; run_reaper(name='bench-reaper')"],
        env,
        logs / "reaper.log",
    )


if __name__ == "__main__":
    main()
