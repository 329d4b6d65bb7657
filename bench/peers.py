"""jobengine side by side with the queues a user would pick instead, in one run.

Every system runs on the same private Postgres (fsync and synchronous commit on) and Redis, on a
database (or a flushed Redis) of its own, with the same backlog of no-op jobs and the same
concurrency: jobengine with chunks and with one job per message, bare Celery with jobengine's
Celery settings, bare Celery with Celery's defaults, Procrastinate and PgQueuer (these two
from the ``bench`` extra). A backlog is timed from its first submission until every job is
done; worker CPU is the workers' process trees, Postgres CPU the postmaster's tree less the
benchmark's polling backend, both in that window. Systems run in a new order each round (the
list, then reversed) and medians over the rounds are reported.

Prints human lines, then one JSON line.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.celery_systems import (
    bare_celery_with_celery_defaults,
    bare_celery_with_jobengine_settings,
    jobengine,
    worker_env,
)
from bench.harness import (
    BenchmarkError,
    Figures,
    Running,
    Servers,
    measure_backlog,
    median_figures,
    private_servers,
)
from config.settings import Settings

JOBENGINE = "jobengine-chunks"


@dataclass(frozen=True)
class Plan:
    jobs: int
    concurrency: int
    chunk_size: int
    batch: int
    prefetch: int
    task_events: bool


Starter = Callable[[Servers, Plan, str, Path], AbstractContextManager[Running]]


def _env(servers: Servers, plan: Plan, database_url: str) -> dict[str, str]:
    return worker_env(database_url, servers.broker_url, plan.prefetch, plan.task_events)


def _jobengine(chunked: bool) -> Starter:
    @contextmanager
    def start(servers: Servers, plan: Plan, url: str, logs: Path) -> Iterator[Running]:
        env = _env(servers, plan, url)
        size = plan.chunk_size if chunked else 1
        with jobengine(url, env, plan.concurrency, logs, chunk_size=size, batch=plan.batch) as je:
            yield je.running

    return start


def _celery_jobengine_settings(
    servers: Servers, plan: Plan, url: str, logs: Path
) -> AbstractContextManager[Running]:
    env = _env(servers, plan, url)
    settings = Settings(
        database_url=url, broker_url=servers.broker_url, task_events=plan.task_events
    )
    return bare_celery_with_jobengine_settings(settings, env, plan.concurrency, logs)


def _celery_defaults(
    servers: Servers, plan: Plan, url: str, logs: Path
) -> AbstractContextManager[Running]:
    return bare_celery_with_celery_defaults(_env(servers, plan, url), plan.concurrency, logs)


def _procrastinate(
    servers: Servers, plan: Plan, url: str, logs: Path
) -> AbstractContextManager[Running]:
    from bench.peer_procrastinate import procrastinate_workers

    return procrastinate_workers(
        url, _env(servers, plan, url), plan.concurrency, logs, batch=plan.batch
    )


def _pgqueuer(
    servers: Servers, plan: Plan, url: str, logs: Path
) -> AbstractContextManager[Running]:
    from bench.peer_pgqueuer import pgqueuer_workers

    return pgqueuer_workers(url, _env(servers, plan, url), plan.concurrency, logs, batch=plan.batch)


# name → (how to start it, whether it keeps its jobs in Postgres, the package it needs)
SYSTEMS: dict[str, tuple[Starter, bool, str | None]] = {
    JOBENGINE: (_jobengine(chunked=True), True, None),
    "jobengine-one-per-message": (_jobengine(chunked=False), True, None),
    "celery-jobengine-settings": (_celery_jobengine_settings, False, None),
    "celery-defaults": (_celery_defaults, False, None),
    "procrastinate": (_procrastinate, True, "procrastinate"),
    "pgqueuer": (_pgqueuer, True, "pgqueuer"),
}


def _missing_packages(names: list[str]) -> list[str]:
    needed = {SYSTEMS[n][2] for n in names} - {None}
    return sorted(p for p in needed if p is not None and importlib.util.find_spec(p) is None)


def _run_one(servers: Servers, plan: Plan, name: str, round_no: int) -> Figures:
    start, in_postgres, _ = SYSTEMS[name]
    logs = servers.root / "logs" / f"{round_no}-{name}"
    logs.mkdir(parents=True)
    database: AbstractContextManager[str] = (
        servers.fresh_database(f"bench_{name.replace('-', '_')}_{round_no}")
        if in_postgres
        else nullcontext(servers.admin_url)
    )
    with database as url, start(servers, plan, url, logs) as running:
        return measure_backlog(name, running, plan.jobs, servers.postmaster)


def _parse() -> tuple[Plan, list[str], int]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("-c", "--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=Settings().dispatch_chunk_size,
        help=f"jobs per message, {JOBENGINE}",
    )
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--batch", type=int, default=500, help="jobs per submission call")
    parser.add_argument(
        "--prefetch",
        type=int,
        default=1,
        help="prefetch multiplier of jobengine and of bare Celery with its settings",
    )
    parser.add_argument(
        "--task-events",
        action="store_true",
        help="Celery task events on for jobengine and bare Celery with its settings",
    )
    parser.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help=f"comma-separated, from: {', '.join(SYSTEMS)}",
    )
    args = parser.parse_args()
    names = [n.strip() for n in args.systems.split(",") if n.strip()]
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown or not names:
        parser.error(f"unknown systems {unknown}: choose from {', '.join(SYSTEMS)}")
    missing = _missing_packages(names)
    if missing:
        parser.exit(
            2,
            f"peers: {', '.join(missing)} not installed (the bench extra). Install it with "
            "`make bench-peers` or `.venv/bin/pip install -e '.[bench]'`, or leave those "
            "systems out with --systems.\n",
        )
    plan = Plan(
        args.jobs, args.concurrency, args.chunk_size, args.batch, args.prefetch, args.task_events
    )
    return plan, names, args.rounds


def main() -> None:
    plan, names, rounds = _parse()
    runs: dict[str, list[Figures]] = {n: [] for n in names}
    with (
        tempfile.TemporaryDirectory(prefix="jobengine-peers-") as tmp,
        private_servers(Path(tmp)) as servers,
    ):
        server = servers.settings()
        print(
            f"peers: {plan.jobs:,} no-op jobs as a backlog, concurrency {plan.concurrency}, "
            f"{rounds} round(s); Postgres {server['server_version']} fsync={server['fsync']} "
            f"synchronous_commit={server['synchronous_commit']}"
        )
        for round_no in range(rounds):
            order = names if round_no % 2 == 0 else names[::-1]
            for name in order:
                figures = _run_one(servers, plan, name, round_no)
                runs[name].append(figures)
                print(f"round {round_no + 1}: {figures.line()}", flush=True)
    medians = {name: median_figures(found) for name, found in runs.items()}
    print(f"medians of {rounds} round(s):")
    for name, m in medians.items():
        pg = m["postgres_cpu_s_per_1k"]
        print(
            f"  {name:<28} {m['jobs_per_s']:>9,.1f} jobs/s   worker {m['worker_cpu_s_per_1k']:.2f}"
            f" / Postgres {'—' if pg is None else f'{pg:.2f}'} CPU s per 1,000 jobs"
        )
    ratios = {}
    if JOBENGINE in medians:
        ours = medians[JOBENGINE]["jobs_per_s"]
        for name, m in medians.items():
            if name != JOBENGINE and ours is not None and m["jobs_per_s"]:
                ratios[name] = round(ours / m["jobs_per_s"], 3)
        for name, ratio in ratios.items():
            print(f"  {JOBENGINE} / {name}: {ratio:.3f}")
    print(
        json.dumps(
            {
                "bench": "peers",
                "jobs": plan.jobs,
                "concurrency": plan.concurrency,
                "chunk_size": plan.chunk_size,
                "prefetch_multiplier": plan.prefetch,
                "task_events": plan.task_events,
                "rounds": rounds,
                "postgres": server,
                "systems": medians,
                "jobengine_chunks_ratio": ratios,
            }
        )
    )


if __name__ == "__main__":
    try:
        main()
    except BenchmarkError as error:
        sys.exit(f"peers: {error}")
