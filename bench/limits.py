"""What a rate limit costs a submission: no limit, a limit too high ever to bite, a keyed one;
and the admission step alone with its bucket in Postgres against a Redis Lua GCRA.

* ``single``: ``enqueue`` of one job per transaction (what a producer's own transaction or
  one REST ``POST`` does), ``--single`` jobs;
* ``batch``: ``enqueue_many`` of ``--batch-size`` jobs per transaction, ``--jobs`` jobs;
* modes, each its own job type, so the limits stay defined throughout (a limit set again
  would void every process's leases of it): ``none`` (no limit applies to the type),
  ``loose`` (a type limit of 10^6 per second: it admits every job and never holds one),
  ``keyed`` (the same per ``account_id``, over ``--keys`` accounts: one bucket each);
* ``admission``: the slot alone, one job per round trip: ``take_slots`` in its own committed
  transaction and as one more statement in an open one (what a submission pays), against
  ``EVALSHA`` of a GCRA in Lua on a private Redis (no job stored). The
  Redis bucket cannot be in the submitting transaction: a submission that rolls back after
  taking its slot keeps it booked, and one that commits after Redis failed has none.

The modes take turns in ``--slices`` slices of each run (in an order that flips every
slice), so the load of a shared machine weighs on all of them alike; each round starts from
emptied, vacuumed tables. Prints
figures, never passes or fails; the last line is JSON.

Usage: python bench/limits.py [--jobs N] [--single N] [--batch-size B] [--rounds R] [--keys K]
                              [--slices S]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import psycopg
import redis
from sqlalchemy import Engine
from sqlalchemy.orm import Session

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.transitions import bench_database, libpq_url  # noqa: E402
from config.logging import configure_logging  # noqa: E402
from jobengine.domain.job import NewJob  # noqa: E402
from jobengine.embedded import EmbeddedRedis  # noqa: E402
from jobengine.enqueue import enqueue, enqueue_many  # noqa: E402
from jobengine.job_types import BUILTINS, JobTypeRegistry, JobTypeSpec, NoopPayload  # noqa: E402
from jobengine.limits import registry  # noqa: E402
from jobengine.limits.admission import admit  # noqa: E402
from jobengine.limits.definition import RateLimit, Scope  # noqa: E402
from jobengine.services import masked_url, upgrade_database  # noqa: E402
from jobengine.store.database import make_engine, transaction  # noqa: E402

NONE, LOOSE, KEYED = "none", "loose", "keyed"
MODES = (NONE, LOOSE, KEYED)
TYPES = {NONE: "noop", LOOSE: "bench-loose", KEYED: "bench-keyed"}
NEVER_BITES = 1e6
LIMITS = {
    NONE: None,
    LOOSE: RateLimit(
        "loose", Scope.TYPE, rate=NEVER_BITES, per="second", burst=1_000_000, job_type=TYPES[LOOSE]
    ),
    KEYED: RateLimit(
        "keyed",
        Scope.KEY,
        rate=NEVER_BITES,
        per="second",
        burst=1_000_000,
        job_type=TYPES[KEYED],
        key_path="account_id",
    ),
}

GCRA_LUA = """
-- GCRA on one Redis key: KEYS[1] holds the bucket's theoretical arrival time (TAT, seconds
-- since the epoch); ARGV[1] is the job's cost and ARGV[2] the bucket's capacity, both in
-- seconds of refill. Returns the job's slot: now, or when the bucket has room for it.
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
tat = tat + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%.6f', tat), 'PX', math.ceil((tat - now) * 1000) + 1)
local slot = tat - tonumber(ARGV[2])
if slot < now then slot = now end
return string.format('%.6f', slot)
"""


def reset(url: str) -> None:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("TRUNCATE jobs, job_history, job_events, rate_limit_buckets CASCADE")
        conn.execute("DELETE FROM rate_limits")
        conn.execute("VACUUM ANALYZE jobs")


def bench_types() -> JobTypeRegistry:
    """The built-in types and a no-op twin for each limited mode."""
    types = JobTypeRegistry()
    for spec in BUILTINS:
        types.register(spec)
    for mode in (LOOSE, KEYED):
        types.register(JobTypeSpec(TYPES[mode], payload_model=NoopPayload))
    return types


BENCH_TYPES = bench_types()


def use_limits(engine: Engine, *modes: str) -> None:
    """Only ``modes``' limits defined, and this process's cache told."""
    with transaction(engine) as conn:
        for stored in registry.list_limits(conn):
            registry.delete_limit(conn, stored.limit.name)
        for mode in modes:
            limit = LIMITS[mode]
            if limit is not None:
                registry.set_limit(conn, limit)


def job(n: int, keys: int, mode: str = KEYED) -> NewJob:
    return NewJob(
        type=TYPES[mode],
        tenant_id="bench",
        project_id="bench",
        payload={"n": n, "account_id": f"acct-{n % keys}"},
    )


def timed(run: Callable[[int], None], count: int, first: int = 0) -> float:
    """Items per second of ``run`` over ``count`` calls numbered from ``first``."""
    started = time.perf_counter()
    for n in range(first, first + count):
        run(n)
    return count / (time.perf_counter() - started)


Runner = Callable[[str, int], None]
"""Submit call ``n`` of a mode."""


def single_runner(engine: Engine, keys: int) -> Runner:
    def run(mode: str, n: int) -> None:
        with Session(engine) as session:
            new = job(n, keys, mode)
            enqueue(
                session,
                new.type,
                new.payload,
                tenant_id="bench",
                project_id="bench",
                types=BENCH_TYPES,
            )
            session.commit()

    return run


def batch_runner(engine: Engine, size: int, keys: int) -> Runner:
    def run(mode: str, n: int) -> None:
        with Session(engine) as session:
            jobs = [job(n * size + i, keys, mode) for i in range(size)]
            enqueue_many(session, jobs, types=BENCH_TYPES)
            session.commit()

    return run


def backend_pid(engine: Engine) -> int:
    """The Postgres backend serving ``engine``'s one pooled connection."""
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def cpu_ns(backend: int) -> int:
    """CPU this process and the backend ``backend`` have spent, in nanoseconds: steadier than
    wall time on a machine whose other load comes and goes (``/proc/<pid>/schedstat``)."""
    on_cpu = int(Path(f"/proc/{backend}/schedstat").read_text().split()[0])
    return time.process_time_ns() + on_cpu


def interleaved(
    engine: Engine, runner: Runner, calls: int, slices: int, round_: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds and CPU seconds (this process and its backend) per call of ``runner`` in each
    mode, the modes taking turns slice by slice (in an order that flips each slice), so a
    machine whose load drifts weighs on all alike."""
    seconds = dict.fromkeys(MODES, 0.0)
    cpu = dict.fromkeys(MODES, 0)
    per_slice = max(calls // slices, 1)
    use_limits(engine, LOOSE, KEYED)
    for mode in MODES:  # warm: statements prepared, caches read
        runner(mode, -1 - MODES.index(mode))
    backend = backend_pid(engine)
    for slice_ in range(slices):
        for mode in MODES if (slice_ + round_) % 2 == 0 else MODES[::-1]:
            first = (slice_ * len(MODES) + MODES.index(mode)) * per_slice
            spent = cpu_ns(backend)
            seconds[mode] += per_slice / timed(partial(runner, mode), per_slice, first)
            cpu[mode] += cpu_ns(backend) - spent
    done = per_slice * slices
    return (
        {mode: seconds[mode] / done for mode in MODES},
        {mode: cpu[mode] / 1e9 / done for mode in MODES},
    )


def pg_admission_rate(engine: Engine, count: int, keys: int) -> float:
    limit = LIMITS[KEYED]
    assert limit is not None

    def run(n: int) -> None:
        with transaction(engine) as conn:
            admit(conn, [job(n, keys)], [limit], lease=False)

    run(-1)
    return timed(run, count)


def pg_statement_rate(engine: Engine, count: int, keys: int) -> float:
    """The slot as a submission pays it: one more statement in a transaction it commits anyway."""
    limit = LIMITS[KEYED]
    assert limit is not None
    with transaction(engine) as conn:
        admit(conn, [job(-1, keys)], [limit], lease=False)
        return timed(lambda n: admit(conn, [job(n, keys)], [limit], lease=False), count)


def redis_admission_rate(client: redis.Redis, count: int, keys: int) -> float:
    script = client.register_script(GCRA_LUA)
    cost = capacity_of = 1 / NEVER_BITES

    def run(n: int) -> None:
        script(keys=[f"rl:keyed:acct-{n % keys}"], args=[cost, capacity_of * 1_000_000])

    run(-1)
    return timed(run, count)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=20000, help="jobs per batch run")
    parser.add_argument("--single", type=int, default=3000, help="jobs per single-job run")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3, help="runs per mode")
    parser.add_argument("--keys", type=int, default=100, help="accounts of the keyed limit")
    parser.add_argument("--slices", type=int, default=10, help="turns the modes take per run")
    args = parser.parse_args(argv)
    configure_logging("WARNING")

    runs: dict[str, list[float]] = {
        f"{kind}_{mode}": [] for kind in ("single", "batch") for mode in MODES
    }
    cpus: dict[str, list[float]] = {name: [] for name in runs}
    admissions: dict[str, list[float]] = {"postgres": [], "postgres_statement": [], "redis": []}
    with bench_database() as url, tempfile.TemporaryDirectory(prefix="jobengine-bench-") as tmp:
        upgrade_database(url, "head")
        server = EmbeddedRedis(Path(tmp) / "redis")
        client = redis.Redis.from_url(server.start())
        engine = make_engine(url, pool_size=1, max_overflow=0)
        print(f"database: {masked_url(url)}")
        print(
            f"single: {args.single} jobs; batch: {args.jobs} jobs of {args.batch_size}; "
            f"keyed over {args.keys} accounts"
        )
        try:
            for round_ in range(args.rounds):
                reset(url)
                kinds = {
                    "single": (single_runner(engine, args.keys), args.single, 1),
                    "batch": (
                        batch_runner(engine, args.batch_size, args.keys),
                        max(args.jobs // args.batch_size, 1),
                        args.batch_size,
                    ),
                }
                for kind, (runner, calls, size) in kinds.items():
                    per_call, cpu_per_call = interleaved(engine, runner, calls, args.slices, round_)
                    for mode in MODES:
                        runs[f"{kind}_{mode}"].append(size / per_call[mode])
                        cpus[f"{kind}_{mode}"].append(cpu_per_call[mode] / size)
                        print(
                            f"  round={round_ + 1} {kind:6s} {mode:5s} "
                            f"{size / per_call[mode]:10.1f} jobs/s "
                            f"{cpu_per_call[mode] / size * 1e6:8.1f} CPU us/job"
                        )
                reset(url)
                use_limits(engine, KEYED)
                admissions["postgres"].append(pg_admission_rate(engine, args.single, args.keys))
                reset(url)
                use_limits(engine, KEYED)
                admissions["postgres_statement"].append(
                    pg_statement_rate(engine, args.single, args.keys)
                )
                client.flushall()
                admissions["redis"].append(redis_admission_rate(client, args.single, args.keys))
                print(
                    f"  round={round_ + 1} admission postgres {admissions['postgres'][-1]:.1f}/s"
                    f" redis {admissions['redis'][-1]:.1f}/s"
                )
        finally:
            reset(url)
            engine.dispose()
            client.close()
            server.stop()

    rate = {name: statistics.median(values) for name, values in runs.items()}
    slots = {name: statistics.median(values) for name, values in admissions.items()}
    figures: dict[str, object] = {
        "bench": "limits",
        "single_jobs": args.single,
        "batch_jobs": args.jobs,
        "batch_size": args.batch_size,
        "keys": args.keys,
    }
    for kind in ("single", "batch"):
        for mode in MODES:
            figures[f"{kind}_{mode}_jobs_per_s"] = round(rate[f"{kind}_{mode}"], 1)
        for mode in (LOOSE, KEYED):
            # Each round's modes ran side by side, slice by slice: their ratio is what one
            # round measured, and the median of those is steadier than a ratio of medians.
            per_round = [
                limited / bare
                for limited, bare in zip(runs[f"{kind}_{mode}"], runs[f"{kind}_none"], strict=True)
            ]
            figures[f"{kind}_{mode}_ratio"] = round(statistics.median(per_round), 3)
            # The same from CPU spent per job (client and backend): none's over the mode's.
            per_round_cpu = [
                bare / limited
                for limited, bare in zip(cpus[f"{kind}_{mode}"], cpus[f"{kind}_none"], strict=True)
            ]
            figures[f"{kind}_{mode}_cpu_ratio"] = round(statistics.median(per_round_cpu), 3)
        for mode in MODES:
            figures[f"{kind}_{mode}_cpu_us_per_job"] = round(
                statistics.median(cpus[f"{kind}_{mode}"]) * 1e6, 1
            )
    figures["admission_postgres_per_s"] = round(slots["postgres"], 1)
    figures["admission_postgres_statement_per_s"] = round(slots["postgres_statement"], 1)
    figures["admission_redis_per_s"] = round(slots["redis"], 1)
    figures["admission_redis_over_postgres_ratio"] = round(slots["redis"] / slots["postgres"], 3)
    print(
        ", ".join(
            f"{kind} {mode} x{figures[f'{kind}_{mode}_ratio']}"
            f" (CPU x{figures[f'{kind}_{mode}_cpu_ratio']})"
            for kind in ("single", "batch")
            for mode in (LOOSE, KEYED)
        )
    )
    print(json.dumps(figures, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
