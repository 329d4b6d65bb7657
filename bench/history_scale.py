"""Per-job cost and ``/metrics`` scrape time with a large history, against an empty one.

Two databases on one private Postgres: ``empty`` (migrated, nothing in it) and ``full``
(``jobs``, ``job_history`` and ``job_events`` filled by bulk SQL to ``--history-rows`` history
rows of final jobs, about five per job as a real one leaves, one outbox event per history row,
folded into the totals as the leader would have, then ``ANALYZE`` as autovacuum would). In each
round both get fresh jobs and the same work through ``jobengine.guard.transition`` on an
autocommit connection, as a worker's executor makes it: claim (``scheduled → claimed →
running`` in one statement), complete, and retry (``running → failed → scheduled``), timed per
statement; the order of the two databases flips every round. Buffers touched per job come
from ``pg_statio_*``, to show which side reads more if one is slower.

Scrapes go through the API (FastAPI on uvicorn, loopback), first at ``--small-history-rows``
then at the full size, both with nothing new to fold and with ``--new-events`` events waiting
for the scrape's own fold (what a scrape finds a few seconds after the leader's last fold).

Prints human lines, then one JSON line. Targets (issue 12): cost at the full size <= 1.2 x
empty; scrape <= 100 ms at 1M history rows.

Usage: python bench/history_scale.py [--history-rows 1000000] [--jobs 500] [--rounds 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import Connection, Engine, create_engine, make_url, text

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from config.logging import configure_logging  # noqa: E402
from config.settings import Settings  # noqa: E402
from jobengine import guard  # noqa: E402
from jobengine.api.app import create_app  # noqa: E402
from jobengine.domain.job import NewJob  # noqa: E402
from jobengine.domain.status import JobStatus  # noqa: E402
from jobengine.embedded import EmbeddedPostgres, free_loopback_port  # noqa: E402
from jobengine.guard import Step  # noqa: E402
from jobengine.services import upgrade_database  # noqa: E402
from jobengine.store.database import make_engine, normalize_url  # noqa: E402
from jobengine.store.jobs_repository import DispatchRef  # noqa: E402
from jobengine.store.metrics_repository import fold_all  # noqa: E402

TENANT = "bench"
ERROR = {"code": "BENCH", "class": "RuntimeError", "message": "simulated failure"}
CLAIM = [Step(JobStatus.CLAIMED), Step(JobStatus.RUNNING)]
RETRY = [Step(JobStatus.FAILED), Step(JobStatus.SCHEDULED, "retry")]
OPS = ("claim", "complete", "retry")

# Final jobs as they rest after a life: (status, share of jobs, path of (from, to, reason)).
SHAPES = {
    "completed": ["scheduled", "claimed", "running", "completed"],
    "cancelled": ["scheduled", "cancelled"],
    "failed": ["scheduled", "claimed", "running", "failed"],
}
FILL = """
-- Final jobs with their history (one row per step of their path) and one outbox event per
-- history row, shaped as the guard writes them; a job's rows are written together, in order.
WITH shape(status, ord, from_status, to_status) AS (
    SELECT * FROM (VALUES {steps}) AS s(status, ord, from_status, to_status)
),
new_jobs AS (
    INSERT INTO jobs (tenant_id, project_id, type, queue, payload, status, attempt, lease_token,
                      result, created_at, updated_at, scheduled_at, started_at, completed_at)
    SELECT 'bulk', 'p', 'noop', 'default', '{{"n": 1}}'::jsonb, picked.status::job_status, 1, 1,
           CASE WHEN picked.status = 'completed' THEN '{{"ok": true}}'::jsonb END,
           t, t, t, t, t
    FROM generate_series(1, %(jobs)s) AS g,
         LATERAL (SELECT CASE WHEN g %% 33 = 0 THEN 'cancelled'
                              WHEN g %% 33 = 1 THEN 'failed'
                              ELSE 'completed' END AS status) AS picked,
         LATERAL (SELECT now() - interval '40 days' + g * interval '10 ms' AS t) AS at
    ORDER BY g
    RETURNING id, status::text AS status, completed_at
),
history AS (
    INSERT INTO job_history (job_id, from_status, to_status, at, actor, reason, attempt)
    SELECT new_jobs.id, shape.from_status::job_status, shape.to_status::job_status,
           new_jobs.completed_at, 'bench', NULL, 1
    FROM new_jobs JOIN shape ON shape.status = new_jobs.status
    ORDER BY new_jobs.id, shape.ord
    RETURNING id, job_id, from_status, to_status, at, attempt
)
INSERT INTO job_events (job_id, history_id, tenant_id, type, version, data, occurred_at)
SELECT history.job_id, history.id, 'bulk', 'job.transition', 1,
       jsonb_build_object('job_id', history.job_id, 'history_id', history.id,
                          'from_status', history.from_status, 'to_status', history.to_status,
                          'attempt', history.attempt, 'actor', 'bench', 'reason', NULL,
                          'details', '{{}}'::jsonb),
       history.at
FROM history
ORDER BY history.id
"""


def _fill_sql() -> str:
    steps = []
    for status, path in SHAPES.items():
        froms = ["NULL", *(f"'{s}'" for s in path[:-1])]
        for ord_, (source, target) in enumerate(zip(froms, path, strict=True)):
            steps.append(f"('{status}', {ord_}, {source}, '{target}')")
    return FILL.format(steps=", ".join(steps))


ROWS_PER_JOB = sum(len(p) for p in SHAPES.values()) / len(SHAPES)  # close enough for sizing


def fill_history(engine: Engine, history_rows: int, *, chunk: int = 50_000) -> int:
    """Add final jobs until about ``history_rows`` more history rows exist; the rows added.
    Each chunk of jobs is its own transaction, as a day of traffic would have been."""
    added = 0
    sql = _fill_sql()
    while added < history_rows:
        jobs = max(1, min(chunk, int((history_rows - added) / ROWS_PER_JOB) + 1))
        with engine.begin() as conn:
            added += conn.exec_driver_sql(sql, {"jobs": jobs}).rowcount
    return added


def history_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM job_history")).scalar_one())


def analyze(engine: Engine) -> None:
    """What autovacuum would have done by now, and a checkpoint, so the filling's dirty pages
    are not written out while the measured statements run."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE jobs, job_history, job_events"))
        conn.execute(text("CHECKPOINT"))


def _buffers(conn: Connection) -> int:
    conn.execute(text("SELECT pg_stat_clear_snapshot()"))
    return int(
        conn.execute(
            text(
                "SELECT coalesce(sum(heap_blks_hit + heap_blks_read + coalesce(idx_blks_hit, 0) "
                "+ coalesce(idx_blks_read, 0)), 0) FROM pg_statio_user_tables"
            )
        ).scalar_one()
    )


def measure_jobs(url: str, jobs: int, warmup: int) -> tuple[dict[str, list[float]], float]:
    """Seconds per statement for each op on ``jobs`` fresh jobs (after ``warmup`` untimed
    ones), and buffers per job."""
    engine = make_engine(url, pool_size=2, max_overflow=0)
    times: dict[str, list[float]] = {op: [] for op in OPS}
    untimed: dict[str, list[float]] = {op: [] for op in OPS}
    try:
        with engine.begin() as conn:
            created = guard.create_jobs(
                conn, [NewJob(type="noop", tenant_id=TENANT)] * (warmup + jobs)
            )
        ids = [job.id for job in created]
        with (
            engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn,
            engine.connect() as stats,
        ):
            for n, job_id in enumerate(ids[:warmup]):
                _cycle(untimed, conn, job_id, retry=bool(n % 2))
            _flush_stats(conn)
            before = _buffers(stats)
            for n, job_id in enumerate(ids[warmup:]):
                _cycle(times, conn, job_id, retry=bool(n % 2))
            _flush_stats(conn)
            after = _buffers(stats)
    finally:
        engine.dispose()
    return times, (after - before) / jobs


def _cycle(times: dict[str, list[float]], conn: Connection, job_id: int, *, retry: bool) -> None:
    """One job's life as a worker makes it: claim, (fail and retry, claim again,) complete."""
    token = _timed(times["claim"], conn, job_id, CLAIM, lease_owner="bench")
    if retry:
        _timed(times["retry"], conn, job_id, RETRY, lease_token=token, error=ERROR)
        token = _timed(times["claim"], conn, job_id, CLAIM, lease_owner="bench")
    _timed(
        times["complete"],
        conn,
        job_id,
        [Step(JobStatus.COMPLETED)],
        lease_token=token,
        result={"ok": True},
    )


def _flush_stats(conn: Connection) -> None:
    """Have this backend report its statistics now (they are otherwise sent lazily)."""
    conn.execute(text("SELECT pg_stat_force_next_flush()"))
    conn.commit()


def _timed(into: list[float], conn: Connection, job_id: int, path: Any, **kwargs: Any) -> int:
    started = time.perf_counter()
    with conn.begin():  # under AUTOCOMMIT no round trip: the statement is its own transaction
        job = guard.transition(conn, job_id, path, actor="bench", **kwargs).job
    into.append(time.perf_counter() - started)
    return job.lease_token


class _NoBroker:
    def publish(self, ref: DispatchRef, countdown: float | None = None) -> None:
        return None

    def publish_chunk(self, refs: Any) -> None:
        return None


@contextmanager
def api(url: str) -> Iterator[str]:
    """The API on a real uvicorn on loopback, over ``url``; its base URL."""
    engine = make_engine(url, pool_size=2)
    app = create_app(
        Settings(database_url=url, broker_url="redis://127.0.0.1:9/0"),
        engine=engine,
        publisher=_NoBroker(),
        revoker=None,
        broker_check=lambda: None,
    )
    port = free_loopback_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise TimeoutError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        engine.dispose()


def add_events(url: str, count: int) -> None:
    """``count`` new transition events not yet folded: jobs created and scheduled."""
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        with engine.begin() as conn:
            guard.create_jobs(conn, [NewJob(type="noop", tenant_id=TENANT)] * (count // 2))
    finally:
        engine.dispose()


def measure_scrapes(url: str, scrapes: int, new_events: int) -> dict[str, float]:
    """Median milliseconds of a ``/metrics`` scrape: idle, and with events to fold."""
    idle: list[float] = []
    folding: list[float] = []
    with api(url) as base, httpx.Client(base_url=base, timeout=60) as client:
        client.get("/metrics").raise_for_status()  # the first scrape folds what is pending
        for _ in range(scrapes):
            started = time.perf_counter()
            client.get("/metrics").raise_for_status()
            idle.append(time.perf_counter() - started)
        for _ in range(max(1, scrapes // 4)):
            add_events(url, new_events)
            started = time.perf_counter()
            client.get("/metrics").raise_for_status()
            folding.append(time.perf_counter() - started)
    return {
        "idle_ms": round(statistics.median(idle) * 1000, 2),
        "folding_ms": round(statistics.median(folding) * 1000, 2),
    }


def explain_claim(url: str) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the statement the guard sends for a claim, on a fresh job,
    rolled back. The statement is taken from the guard's call rather than rebuilt here, so it
    is the one being measured whatever the guard's internals are."""
    sent: list[tuple[str, dict[str, Any]]] = []
    original = guard.run_statement

    def recording(conn: Connection, sql: str, params: Any) -> Any:
        sent.append((sql, dict(params)))
        return original(conn, sql, params)

    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            tx = conn.begin()
            job = guard.create_job(conn, NewJob(type="noop", tenant_id=TENANT), schedule=True)
            assert job is not None
            guard.run_statement = recording  # type: ignore[assignment]
            try:
                guard.transition(conn, job.id, CLAIM, actor="bench", lease_owner="bench")
            finally:
                guard.run_statement = original  # type: ignore[assignment]
            tx.rollback()
            tx = conn.begin()
            job = guard.create_job(conn, NewJob(type="noop", tenant_id=TENANT), schedule=True)
            assert job is not None
            sql, params = sent[-1]
            params["job_id"] = job.id
            plan = conn.exec_driver_sql(
                "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, params
            ).scalars()
            text_plan = "\n".join(plan)
            tx.rollback()
        return text_plan
    finally:
        engine.dispose()


def per_op(samples: dict[str, list[float]]) -> dict[str, float]:
    """Median microseconds per statement, by op."""
    return {op: round(statistics.median(values) * 1e6, 1) for op, values in samples.items()}


@contextmanager
def databases() -> Iterator[tuple[str, str]]:
    """Two migrated databases, empty and to be filled, on one private server."""
    with tempfile.TemporaryDirectory(prefix="jobengine-history-") as tmp:
        server = EmbeddedPostgres(Path(tmp) / "postgres")
        admin_url = server.start()
        try:
            admin = create_engine(normalize_url(admin_url), isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                for name in ("bench_empty", "bench_full"):
                    conn.execute(text(f"CREATE DATABASE {name}"))
            admin.dispose()
            empty, full = (
                make_url(admin_url).set(database=name).render_as_string(hide_password=False)
                for name in ("bench_empty", "bench_full")
            )
            for url in (empty, full):
                upgrade_database(url, "head")
            yield empty, full
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--history-rows", type=int, default=1_000_000)
    parser.add_argument("--small-history-rows", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=500, help="fresh jobs per round and side")
    parser.add_argument("--warmup", type=int, default=50, help="untimed jobs before each side")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument("--new-events", type=int, default=1000, help="waiting for a scrape")
    parser.add_argument("--explain", action="store_true", help="print the claim's plan on both")
    args = parser.parse_args(argv)
    configure_logging("WARNING")

    with databases() as (empty_url, full_url):
        full_engine = make_engine(full_url, pool_size=1)
        try:
            fill_history(full_engine, args.small_history_rows)
            folded = fold_all(full_engine)
            analyze(full_engine)
            small = history_count(full_engine)
            print(f"filled to {small} history rows ({folded} events folded)")
            scrape_small = measure_scrapes(full_url, args.scrapes, args.new_events)
            print(f"scrape at {small} history rows: {scrape_small}")

            started = time.perf_counter()
            fill_history(full_engine, args.history_rows - history_count(full_engine))
            fill_seconds = time.perf_counter() - started
            fold_started = time.perf_counter()
            folded = fold_all(full_engine)
            fold_seconds = time.perf_counter() - fold_started
            analyze(full_engine)
            full = history_count(full_engine)
            print(
                f"filled to {full} history rows in {fill_seconds:.1f} s; the leader's fold of "
                f"{folded} events took {fold_seconds:.2f} s "
                f"({folded / max(fold_seconds, 1e-9):,.0f} events/s)"
            )
            scrape_full = measure_scrapes(full_url, args.scrapes, args.new_events)
            print(f"scrape at {full} history rows: {scrape_full}")

            rounds: list[dict[str, dict[str, float]]] = []
            buffers: dict[str, list[float]] = {"empty": [], "full": []}
            for round_ in range(args.rounds):
                order = [("empty", empty_url), ("full", full_url)]
                medians: dict[str, dict[str, float]] = {}
                for side, url in order if round_ % 2 == 0 else order[::-1]:
                    times, per_job = measure_jobs(url, args.jobs, args.warmup)
                    medians[side] = per_op(times)
                    buffers[side].append(per_job)
                    figures = f"{medians[side]} µs, {per_job:.0f} buffers/job"
                    print(f"  round {round_ + 1} {side:5s} {figures}")
                rounds.append(medians)
            if args.explain:
                for side, url in (("empty", empty_url), ("full", full_url)):
                    print(f"claim statement on {side}:\n{explain_claim(url)}")
        finally:
            full_engine.dispose()

    costs = {
        side: {op: round(statistics.median(r[side][op] for r in rounds), 1) for op in OPS}
        for side in ("empty", "full")
    }
    # Each round's two sides ran back to back under the same load: compare them pairwise.
    ratios = {
        op: round(statistics.median(r["full"][op] / r["empty"][op] for r in rounds), 3)
        for op in OPS
    }
    worst = max(ratios.values())
    print(f"per statement, µs (median of rounds): empty {costs['empty']}, full {costs['full']}")
    print(f"ratio full / empty (median of rounds' ratios): {ratios} (target <= 1.2)")
    print(
        f"scrape: {scrape_small['idle_ms']} ms at {small} rows, {scrape_full['idle_ms']} ms at "
        f"{full} rows; with {args.new_events} events to fold {scrape_full['folding_ms']} ms "
        "(target <= 100 ms)"
    )
    print(
        json.dumps(
            {
                "bench": "history_scale",
                "history_rows": full,
                "small_history_rows": small,
                "jobs_per_round": args.jobs,
                "rounds": args.rounds,
                "empty_us": costs["empty"],
                "full_us": costs["full"],
                "ratio": ratios,
                "worst_ratio": worst,
                "buffers_per_job": {
                    side: round(statistics.mean(values), 1) for side, values in buffers.items()
                },
                "scrape_small_ms": scrape_small,
                "scrape_full_ms": scrape_full,
                "fold_events_per_second": round(folded / max(fold_seconds, 1e-9)),
            },
            separators=(",", ":"),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
