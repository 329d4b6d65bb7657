"""Transitions per second through the guard, against the same work done as bare SQL.

The guard is the one door every status change goes through, so its cost per transition bounds
the whole fleet. This puts a number on that cost: the same cycle of transitions
(scheduled -> claimed -> running -> failed -> scheduled -> ...), each with its history row and
outbox event, one transaction per transition except the failure, which is retried as workers
record it: running -> failed -> scheduled in one transaction (the guard: one statement), done

* ``guard``: ``jobengine.guard.transition`` (one compare-and-set statement that writes the
  history row and the event too) on a SQLAlchemy connection, in an explicit transaction
  (BEGIN, statement, COMMIT), as a producer's own transaction uses it;
* ``guard_autocommit``: the same statement as its own transaction (no BEGIN/COMMIT round
  trips), as a worker's executor uses it;
* ``bare``: plain psycopg, UPDATE ... WHERE id AND status [AND lease_token], INSERT
  job_history, INSERT job_events, COMMIT;

on the same server in the same run, with 1 and 2 client processes, each with its own
connection and its own jobs. The order of modes flips every round so none always gets the
warmer server. Prints figures, never passes or fails; the last line is JSON, whose
``guard_tps``/``ratio`` are the explicit-transaction guard against bare SQL.

Usage: python bench/transitions.py [--transitions N] [--warmup N] [--rounds N] [--jobs N]
Without JOBENGINE_DATABASE_URL it starts a private Postgres (loopback) and stops it at the end;
with it, it creates and uses a ``jobengine_bench`` database on that server.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Connection, create_engine, make_url, text

from config.logging import configure_logging
from jobengine import guard
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.embedded import EmbeddedPostgres
from jobengine.guard import Step
from jobengine.services import masked_url, upgrade_database
from jobengine.store.database import make_engine, normalize_url

BENCH_DB = "jobengine_bench"
GUARD, GUARD_AUTOCOMMIT, BARE = "guard", "guard_autocommit", "bare"
MODES = (GUARD, GUARD_AUTOCOMMIT, BARE)
TENANT = "bench"
ERROR = {"code": "BENCH", "message": "simulated failure"}
ERROR_JSON = json.dumps(ERROR, separators=(",", ":"), sort_keys=True)

# The cycle, starting from `scheduled`: each entry is the state entered.
CYCLE = (JobStatus.CLAIMED, JobStatus.RUNNING, JobStatus.FAILED, JobStatus.SCHEDULED)
PREVIOUS = {
    JobStatus.CLAIMED: JobStatus.SCHEDULED,
    JobStatus.RUNNING: JobStatus.CLAIMED,
    JobStatus.FAILED: JobStatus.RUNNING,
    JobStatus.SCHEDULED: JobStatus.FAILED,
}
FENCED = {JobStatus.RUNNING, JobStatus.FAILED}
"""Moves made by the lease holder, which must present its token (as a worker does)."""

# Bare SQL: the columns each move sets are the ones the schema's checks demand
# (finished iff completed_at, leased iff claimed/running), i.e. what the guard sets too.
BARE_SET = {
    JobStatus.CLAIMED: "attempt = attempt + 1, lease_token = lease_token + 1, "
    "lease_owner = %(owner)s, lease_expires_at = now() + interval '30 seconds'",
    JobStatus.RUNNING: "started_at = now(), lease_expires_at = now() + interval '30 seconds'",
    JobStatus.FAILED: "last_error = %(error)s::jsonb, completed_at = now(), "
    "lease_owner = NULL, lease_expires_at = NULL",
    JobStatus.SCHEDULED: "scheduled_at = now(), not_before = NULL, completed_at = NULL, "
    "dispatched_at = NULL, lease_owner = NULL, lease_expires_at = NULL",
}
BARE_UPDATE = {
    target: f"""UPDATE jobs SET status = %(to)s::job_status, updated_at = now(), {columns}
WHERE id = %(id)s AND status = %(from)s::job_status"""
    + (" AND lease_token = %(token)s" if target in FENCED else "")
    + "\nRETURNING attempt, tenant_id, lease_token"
    for target, columns in BARE_SET.items()
}
BARE_HISTORY = """INSERT INTO job_history (job_id, from_status, to_status, actor, reason, attempt)
VALUES (%(id)s, %(from)s::job_status, %(to)s::job_status, %(actor)s, NULL, %(attempt)s)
RETURNING id, at"""
BARE_EVENT = """INSERT INTO job_events (job_id, history_id, tenant_id, type, version, data,
                        occurred_at)
VALUES (%(id)s, %(history_id)s, %(tenant)s, 'job.transition', 1, %(data)s::jsonb, %(at)s)"""


@dataclass(frozen=True, slots=True)
class Task:
    mode: str
    url: str
    job_ids: tuple[int, ...]
    warmup: int
    transitions: int
    owner: str


class _Cycler:
    """Walks a client's jobs round-robin through ``CYCLE``, keeping each one's lease token."""

    def __init__(self, job_ids: tuple[int, ...]) -> None:
        self.job_ids = job_ids
        self.step = dict.fromkeys(job_ids, 0)
        self.token = dict.fromkeys(job_ids, 0)
        self.retried: set[int] = set()
        """Jobs whose ``failed → scheduled`` was taken with their failure (a retry)."""

    def moves(self, count: int, start: int) -> Iterator[tuple[int, JobStatus]]:
        for n in range(start, start + count):
            job_id = self.job_ids[n % len(self.job_ids)]
            target = CYCLE[self.step[job_id] % len(CYCLE)]
            self.step[job_id] += 1
            yield job_id, target


def _guard_runner(
    task: Task, *, autocommit: bool
) -> tuple[Callable[[int, JobStatus, _Cycler], None], Any]:
    engine = make_engine(task.url, pool_size=1, max_overflow=0)
    conn: Connection = engine.connect()
    if autocommit:
        # The guard's statement alone is the whole unit of work, so it can be its own
        # transaction: no BEGIN, no COMMIT round trips (how a worker's executor calls it).
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")

    def move(job_id: int, target: JobStatus, cycler: _Cycler) -> None:
        if target is JobStatus.SCHEDULED and job_id in cycler.retried:
            cycler.retried.discard(job_id)  # taken with the failure
            return
        kwargs: dict[str, Any] = {"actor": task.owner}
        path: list[Step] = [Step(target)]
        if target is JobStatus.CLAIMED:
            kwargs["lease_owner"] = task.owner
        elif target in FENCED:
            kwargs["lease_token"] = cycler.token[job_id]
            if target is JobStatus.FAILED:
                kwargs["error"] = ERROR
                path.append(Step(JobStatus.SCHEDULED, "retry"))
                cycler.retried.add(job_id)
        with conn.begin():  # under AUTOCOMMIT this costs no round trip
            job = guard.transition(conn, job_id, path, **kwargs).job
        cycler.token[job_id] = job.lease_token

    def close() -> None:
        conn.close()
        engine.dispose()

    return move, close


def _bare_runner(task: Task) -> tuple[Callable[[int, JobStatus, _Cycler], None], Any]:
    conn = psycopg.connect(libpq_url(task.url))

    def step(cur: Any, job_id: int, target: JobStatus, token: int) -> int:
        source = PREVIOUS[target]
        params: dict[str, Any] = {
            "id": job_id,
            "to": target.value,
            "from": source.value,
            "token": token,
            "owner": task.owner,
            "error": ERROR_JSON,
        }
        cur.execute(BARE_UPDATE[target], params)
        moved = cur.fetchone()
        if moved is None:
            raise RuntimeError(f"bare UPDATE of job {job_id} to {target} matched no row")
        attempt, tenant, new_token = moved
        params.update(attempt=attempt, actor=task.owner)
        cur.execute(BARE_HISTORY, params)
        history = cur.fetchone()
        assert history is not None
        history_id, at = history
        data = {
            "job_id": job_id,
            "history_id": history_id,
            "from_status": source.value,
            "to_status": target.value,
            "attempt": attempt,
            "actor": task.owner,
            "reason": None,
            "details": {},
        }
        cur.execute(
            BARE_EVENT,
            {
                "id": job_id,
                "history_id": history_id,
                "tenant": tenant,
                "data": json.dumps(data, separators=(",", ":")),
                "at": at,
            },
        )
        return int(new_token)

    def move(job_id: int, target: JobStatus, cycler: _Cycler) -> None:
        if target is JobStatus.SCHEDULED and job_id in cycler.retried:
            cycler.retried.discard(job_id)  # taken with the failure
            return
        with conn.cursor() as cur:
            token = step(cur, job_id, target, cycler.token[job_id])
            if target is JobStatus.FAILED:
                token = step(cur, job_id, JobStatus.SCHEDULED, token)
                cycler.retried.add(job_id)
        conn.commit()
        cycler.token[job_id] = token

    return move, conn.close


def _client(task: Task, barrier: Any, results: Any) -> None:
    """One client process: warm up, wait for the others, then time its transitions."""
    if task.mode == BARE:
        move, close = _bare_runner(task)
    else:
        move, close = _guard_runner(task, autocommit=task.mode == GUARD_AUTOCOMMIT)
    cycler = _Cycler(task.job_ids)
    try:
        for job_id, target in cycler.moves(task.warmup, 0):
            move(job_id, target, cycler)
        barrier.wait()
        started = time.monotonic()  # system-wide clock: comparable across processes
        for job_id, target in cycler.moves(task.transitions, task.warmup):
            move(job_id, target, cycler)
        results.put((started, time.monotonic()))
    except BaseException as exc:
        barrier.abort()
        results.put(exc)
        raise
    finally:
        close()


def libpq_url(url: str) -> str:
    """The SQLAlchemy URL as a libpq URI for plain psycopg."""
    parsed = make_url(normalize_url(url)).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


def _vacuum(url: str) -> None:
    """Equal starting conditions for each run: no dead row versions left by the previous one."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE jobs")


def run_once(url: str, mode: str, clients: int, args: argparse.Namespace) -> float:
    """Transitions per second of ``clients`` processes in ``mode``, over fresh jobs."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(clients)
    results = ctx.Queue()
    tasks = [
        Task(
            mode=mode,
            url=url,
            job_ids=_new_jobs(url, args.jobs),
            warmup=args.warmup,
            transitions=args.transitions,
            owner=f"bench-{mode}-{n}",
        )
        for n in range(clients)
    ]
    _vacuum(url)
    procs = [ctx.Process(target=_client, args=(t, barrier, results)) for t in tasks]
    for p in procs:
        p.start()
    spans: list[tuple[float, float]] = []
    for _ in procs:
        got = results.get(timeout=600)
        if isinstance(got, BaseException):
            for p in procs:
                p.join(10)
            raise RuntimeError(f"a {mode} client failed: {got!r}")
        spans.append(got)
    for p in procs:
        p.join(30)
    elapsed = max(end for _, end in spans) - min(start for start, _ in spans)
    return clients * int(args.transitions) / elapsed


def _new_jobs(url: str, count: int) -> tuple[int, ...]:
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        with engine.begin() as conn:
            ids = []
            for _ in range(count):
                job = guard.create_job(conn, NewJob(type="noop", tenant_id=TENANT), schedule=True)
                assert job is not None
                ids.append(job.id)
        return tuple(ids)
    finally:
        engine.dispose()


@contextmanager
def bench_database() -> Iterator[str]:
    """A migrated database to hammer: a private server, or ``jobengine_bench`` on a given one."""
    configured = os.environ.get("JOBENGINE_DATABASE_URL")
    if configured:
        admin = create_engine(normalize_url(configured), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                exists = conn.execute(
                    text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": BENCH_DB}
                ).first()
                if exists is None:
                    conn.execute(text(f"CREATE DATABASE {BENCH_DB}"))
        finally:
            admin.dispose()
        url = make_url(normalize_url(configured)).set(database=BENCH_DB)
        yield url.render_as_string(hide_password=False)
        return
    with tempfile.TemporaryDirectory(prefix="jobengine-bench-") as tmp:
        server = EmbeddedPostgres(Path(tmp) / "postgres")
        try:
            yield server.start()
        finally:
            server.stop()


def _server_facts(url: str) -> str:
    with psycopg.connect(libpq_url(url)) as conn:
        rows = conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN "
            "('server_version', 'synchronous_commit', 'fsync', 'shared_buffers') ORDER BY name"
        ).fetchall()
    return ", ".join(f"{name}={setting}" for name, setting in rows)


def _cleanup(url: str) -> None:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        for table in ("job_events", "job_history"):
            conn.execute(
                f"DELETE FROM {table} WHERE job_id IN (SELECT id FROM jobs WHERE tenant_id = %s)",
                (TENANT,),
            )
        conn.execute("DELETE FROM jobs WHERE tenant_id = %s", (TENANT,))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--transitions", type=int, default=5000, help="per client, per run")
    parser.add_argument("--warmup", type=int, default=500, help="per client, per run")
    parser.add_argument("--rounds", type=int, default=2, help="runs per mode and client count")
    parser.add_argument("--jobs", type=int, default=16, help="jobs each client cycles through")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    configure_logging("WARNING")  # stdout carries only the figures

    figures: dict[str, dict[str, float]] = {}
    with bench_database() as url:
        upgrade_database(url, "head")
        print(f"database: {masked_url(url)}")
        print(f"server:   {_server_facts(url)}")
        print(
            f"each run: {args.transitions} transitions per client after {args.warmup} warmup, "
            f"{args.jobs} jobs per client, one transition per transaction"
        )
        try:
            for clients in args.clients:
                totals = {mode: [0.0, 0.0] for mode in MODES}  # transitions, seconds
                for round_ in range(args.rounds):
                    for mode in MODES if round_ % 2 == 0 else MODES[::-1]:
                        tps = run_once(url, mode, clients, args)
                        done = clients * args.transitions
                        totals[mode][0] += done
                        totals[mode][1] += done / tps
                        print(f"  clients={clients} round={round_ + 1} {mode:16s} {tps:8.1f} tps")
                tps_of = {mode: totals[mode][0] / totals[mode][1] for mode in MODES}
                figures[str(clients)] = {
                    "guard_tps": round(tps_of[GUARD], 1),
                    "bare_tps": round(tps_of[BARE], 1),
                    "ratio": round(tps_of[GUARD] / tps_of[BARE], 3),
                    "guard_autocommit_tps": round(tps_of[GUARD_AUTOCOMMIT], 1),
                    "autocommit_ratio": round(tps_of[GUARD_AUTOCOMMIT] / tps_of[BARE], 3),
                }
                print(
                    f"clients={clients}: guard {tps_of[GUARD]:.1f} tps "
                    f"(ratio {figures[str(clients)]['ratio']:.3f}), "
                    f"guard autocommit {tps_of[GUARD_AUTOCOMMIT]:.1f} tps "
                    f"(ratio {figures[str(clients)]['autocommit_ratio']:.3f}), "
                    f"bare SQL {tps_of[BARE]:.1f} tps"
                )
        finally:
            _cleanup(url)

    headline = figures[str(max(args.clients))]
    print(
        json.dumps(
            {
                "bench": "transitions",
                "clients": figures,
                "guard_tps": headline["guard_tps"],
                "bare_tps": headline["bare_tps"],
                "ratio": headline["ratio"],
                "guard_autocommit_tps": headline["guard_autocommit_tps"],
                "autocommit_ratio": headline["autocommit_ratio"],
                "transitions_per_client": args.transitions,
            },
            separators=(",", ":"),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
