"""The cost of promotion: a run's shapes against as many flat jobs, through real workers.

Three shapes, each one run submitted in one transaction, timed from the submission until
every job of it is ``completed`` in Postgres: a chain (each job the child of the one before,
so one job runs at a time and each step pays a promotion, a publish and a claim), a fan-out
(one root releasing N children in the transaction that completes it) and a fan-in (N roots,
one child released by the last of them). Each is measured against N flat jobs submitted in
batches, on the same worker, with the same chunking: the ratio is what being in a run costs.
The fan-out's aim is a ratio within 1.5. What a run adds is serial: its one submitting
transaction, and the release of a fan-out's children in the root's completion, which the
benchmark prints as ``fan_out_release_s``. Each shape is measured ``--rounds`` times, each
round a run and then its flat jobs; the JSON line holds the rounds' medians and every
round's ratio (``*_ratios``), since wall time on a shared machine drifts by tens of percent
between runs.

One prefork worker (``-c``) and one leading reaper (the dispatcher's safety net) run on a
private Postgres and Redis. Prints human lines, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
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
Figures = dict[str, float | int | list[float] | None]
ROOT = "root"
"""The fan-out's one parent, by its key in the run."""

RELEASE_SQL = """
-- Seconds from the root's completion to its first child's claim, both on Postgres's clock:
-- the release (count-off and move of every child, commit, first publish) nothing overlaps.
SELECT extract(epoch FROM
           min(h.at) FILTER (WHERE j.run_key <> %(root)s AND h.to_status = 'claimed')
         - min(h.at) FILTER (WHERE j.run_key = %(root)s AND h.to_status = 'completed'))
FROM jobs AS j JOIN job_history AS h ON h.job_id = j.id
WHERE j.run_id = (SELECT max(id) FROM runs WHERE name = %(name)s)
"""


def chain(n: int) -> RunSpec:
    jobs = tuple(RunJobSpec(key=f"c{i}", type="noop") for i in range(n))
    edges = tuple((f"c{i}", f"c{i + 1}") for i in range(n - 1))
    return RunSpec("bench", "bench", f"chain-{n}", jobs, edges)


def fan_out(n: int) -> RunSpec:
    children = [RunJobSpec(key=f"c{i}", type="noop") for i in range(n)]
    jobs = (RunJobSpec(key=ROOT, type="noop"), *children)
    return RunSpec("bench", "bench", f"fan-out-{n}", jobs, tuple((ROOT, c.key) for c in children))


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


def release_seconds(database_url: str, spec: RunSpec) -> float | None:
    """None when no child was claimed (a fan-out the benchmark waited for always has one)."""
    with psycopg.connect(libpq_url(database_url)) as conn:
        row = conn.execute(RELEASE_SQL, {"name": spec.name, "root": ROOT}).fetchone()
    return round(float(row[0]), 3) if row and row[0] is not None else None


@dataclass(frozen=True, slots=True)
class Round:
    """One shape's run and, right after it, as many flat jobs: a pair the machine's drift
    touches alike, so each pair's ratio is read on its own and the rounds' median kept."""

    submit_s: float
    run_s: float
    run_cpu: float
    flat_s: float
    flat_cpu: float
    release_s: float | None

    @property
    def ratio(self) -> float:
        return self.run_s / self.flat_s

    @property
    def cpu_ratio(self) -> float:
        return self.run_cpu / self.flat_cpu


def measure(
    shape: str,
    spec: RunSpec,
    submit: Callable[[RunSpec], object],
    running: Running,
    cpu: Callable[[], float],
    database_url: str,
) -> Round:
    n = len(spec.jobs)
    submit_s, run_s, run_cpu = timed(f"{shape} of {n} done", partial(submit, spec), running, cpu)
    _, flat_s, flat_cpu = timed(f"{n} flat jobs done", partial(running.submit, n), running, cpu)
    release = release_seconds(database_url, spec) if shape == "fan_out" else None
    return Round(submit_s, run_s, run_cpu, flat_s, flat_cpu, release)


def summary(shape: str, n: int, rounds: list[Round]) -> Figures:
    """The medians of the rounds, and every round's ratio as measured."""

    def mid(values: list[float]) -> float:
        return round(statistics.median(values), 3)

    figures: Figures = {
        shape: n,
        f"{shape}_s": mid([r.run_s for r in rounds]),
        f"{shape}_submit_s": mid([r.submit_s for r in rounds]),
        f"{shape}_flat_s": mid([r.flat_s for r in rounds]),
        f"{shape}_ratio": mid([r.ratio for r in rounds]),
        f"{shape}_ratios": [round(r.ratio, 3) for r in rounds],
        f"{shape}_cpu_s": mid([r.run_cpu for r in rounds]),
        f"{shape}_flat_cpu_s": mid([r.flat_cpu for r in rounds]),
        f"{shape}_cpu_ratio": mid([r.cpu_ratio for r in rounds]),
    }
    if shape == "fan_out":
        releases = [r.release_s for r in rounds if r.release_s is not None]
        figures["fan_out_release_s"] = mid(releases) if releases else None
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chain", type=int, default=1_000, help="jobs in the chain")
    parser.add_argument("--fan-out", type=int, default=10_000, help="children of the root")
    parser.add_argument("--fan-in", type=int, default=10_000, help="parents of the sink")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--batch", type=int, default=500, help="flat jobs per submission")
    parser.add_argument("--chunk-size", type=int, default=Settings().dispatch_chunk_size)
    parser.add_argument(
        "--rounds", type=int, default=3, help="pairs of (shape, flat jobs) per shape; medians kept"
    )
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: give at least 1 round per shape")

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
                    figures: Figures = {}
                    for shape, n, spec in (
                        ("chain", args.chain, chain(args.chain)),
                        ("fan_out", args.fan_out, fan_out(args.fan_out)),
                        ("fan_in", args.fan_in, fan_in(args.fan_in)),
                    ):
                        rounds = [
                            measure(shape, spec, submit, running, cpu, url)
                            for _ in range(args.rounds)
                        ]
                        figures.update(summary(shape, n, rounds))
                        jobs = len(spec.jobs)
                        for r in rounds:
                            print(
                                f"{shape:<8} {jobs:>6} jobs in one run: {r.run_s:8.2f} s"
                                f" ({r.submit_s:.2f} s to submit,"
                                + ("" if r.release_s is None else f" {r.release_s:.2f} s release,")
                                + f" {r.run_cpu:.2f} CPU s);"
                                f" as many flat jobs: {r.flat_s:8.2f} s ({r.flat_cpu:.2f} CPU s);"
                                f" ratio {r.ratio:.2f} (CPU {r.cpu_ratio:.2f})"
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
