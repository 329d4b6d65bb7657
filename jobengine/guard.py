"""The guard: the one code path that changes ``jobs.status``.

Every transition is a single compare-and-set statement (see ``store.queries``) that writes the
history row and the outbox event with it, inside the caller's transaction. The caller commits:
the guard never does, so a producer's own transaction, a worker's claim and the reaper's
rescue all use it the same way. Zero rows updated is reported as the typed reason it lost.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import pq
from sqlalchemy import Connection

from jobengine.domain.dead_letter import DeadLetterReason
from jobengine.domain.job import Job, NewJob
from jobengine.domain.status import FINAL_STATES, JobStatus
from jobengine.domain.transitions import allowed_sources, is_allowed
from jobengine.errors import (
    InvalidTransition,
    JobNotFound,
    LeaseNotExpired,
    NotDue,
    StaleLease,
)
from jobengine.runs import promotion
from jobengine.store import limits_queries, queries, run_queries
from jobengine.store.database import run_all, run_statement
from jobengine.store.jobs_repository import DispatchRef
from jobengine.store.rows import born_job, job_from_row

SYSTEM_ACTOR = "system"


@dataclass(frozen=True, slots=True)
class Step:
    """One hop of a path; ``reason`` lands in its history row."""

    to: JobStatus
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class TransitionResult:
    job: Job
    from_status: JobStatus


@dataclass(frozen=True, slots=True)
class Released:
    """A run's child that a move released, as its publisher needs it. A fan-out releases
    thousands in the finalizing transaction, before the first of them can be published:
    10,000 of these are built in 0.02 s, 10,000 ``Job`` rows took 0.17 s."""

    tenant_id: str
    ref: DispatchRef

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> Released:
        return cls(
            row["tenant_id"],
            DispatchRef(
                id=row["id"],
                type=row["type"],
                queue=row["queue"],
                priority=row["priority"],
                attempt=row["attempt"],
                time_limit_seconds=row["time_limit_seconds"],
            ),
        )


def _check_path(steps: Sequence[Step]) -> None:
    """A path's own hops must be in the table; its first hop is the statement's to judge.

    A first target that nothing leads to (``pending``) is not a programming error but a move
    the statement refuses like any other: ``InvalidTransition`` naming the current state.
    """
    for prev, step in itertools.pairwise(steps):
        if not is_allowed(prev.to, step.to):
            raise ValueError(f"path step {prev.to} → {step.to} is not in the transition table")


def _path(path: Step | Sequence[Step]) -> tuple[Step, ...]:
    steps = (path,) if isinstance(path, Step) else tuple(path)
    if not steps:
        raise ValueError("a transition needs at least one step")
    _check_path(steps)
    return steps


@lru_cache(maxsize=64)
def _statement(
    targets: tuple[JobStatus, ...],
    fenced: bool,
    lease_expired: bool,
    due: bool,
    many: bool = False,
    held: bool = False,
    leaves: bool = False,
    settled: bool = False,
) -> str:
    """``leaves``: only jobs without children move, and their runs count them in the same
    statement (``store.run_queries.RUN_COUNTS_OF_MOVED``). ``settled``: a run's settling
    moves them, and they come back as ``queries.FINAL_SETTLED``, not whole."""
    effects: dict[str, str] = {}
    for target in targets:
        effects.update(queries.EFFECTS.get(target, {}))
    return queries.transition_sql(
        effects,
        fenced=fenced,
        lease_expired=lease_expired,
        due=due,
        many=many,
        held=held,
        dead_letter=targets[-1] is JobStatus.FAILED,
        replay=targets == (JobStatus.SCHEDULED,),
        extra_fence=run_queries.FENCE_LEAF if leaves else "",
        extra_ctes=run_queries.RUN_COUNTS_OF_MOVED if leaves else "",
        settled=settled,
    )


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), sort_keys=True)


def _step_params(steps: Sequence[Step]) -> dict[str, list[str | None]]:
    """The path as arrays; the first step's ``from`` is filled in by the statement."""
    froms: list[str | None] = [None, *(s.to.value for s in steps[:-1])]
    return {
        "step_from": froms,
        "step_to": [s.to.value for s in steps],
        "step_reason": [s.reason for s in steps],
    }


def _move_params(
    steps: Sequence[Step],
    *,
    actor: str,
    lease_token: int | None = None,
    lease_owner: str | None = None,
    lease_ttl_seconds: float = 30.0,
    result: Any = None,
    error: Mapping[str, Any] | None = None,
    not_before: datetime | None = None,
    details: Mapping[str, Any] | None = None,
    dead_letter_reason: DeadLetterReason | None = None,
) -> dict[str, Any]:
    """Parameters of the transition statement, shared by one job and many."""
    if any(s.to is JobStatus.CLAIMED for s in steps) and not lease_owner:
        raise ValueError("a claim needs a lease_owner: the lease must name its holder")
    if steps[-1].to is JobStatus.FAILED and dead_letter_reason is None:
        raise ValueError("a job failing for good is dead-lettered: give dead_letter_reason")
    return {
        "to_status": steps[-1].to.value,
        "allowed_from": [s.value for s in allowed_sources(steps[0].to)],
        "lease_token": lease_token,
        "lease_owner": lease_owner,
        "lease_ttl": lease_ttl_seconds,
        "result": _json(result),
        "error": _json(dict(error) if error is not None else None),
        "not_before": not_before,
        "actor": actor,
        "details": _json(dict(details or {})),
        "dead_letter_reason": None if dead_letter_reason is None else dead_letter_reason.value,
        **_step_params(steps),
    }


def transition(
    conn: Connection,
    job_id: int,
    path: JobStatus | Step | Sequence[Step],
    *,
    actor: str = SYSTEM_ACTOR,
    reason: str | None = None,
    lease_token: int | None = None,
    require_lease_expired: bool = False,
    require_due: bool = False,
    lease_owner: str | None = None,
    lease_ttl_seconds: float = 30.0,
    result: Any = None,
    error: Mapping[str, Any] | None = None,
    not_before: datetime | None = None,
    details: Mapping[str, Any] | None = None,
    dead_letter_reason: DeadLetterReason | None = None,
    released: list[Released] | None = None,
    in_run: bool | None = None,
) -> TransitionResult:
    """Move one job along ``path`` (one state, or several steps taken atomically).

    ``lease_token`` fences the move: a worker whose lease was taken over presents an old token
    and gets ``StaleLease``. ``require_lease_expired`` lets the reaper rescue only a lease that
    no heartbeat has extended since it looked; ``require_due`` refuses to claim a job whose
    ``not_before`` lies ahead. A path ending in ``failed`` dead-letters the job in the same
    statement, for ``dead_letter_reason``. A job of a run settles its run and children in the
    same transaction (``_settle``); children it released are appended to ``released``, whose
    caller promises to publish them after commit. ``in_run`` is what the caller knows of
    that (see ``_atomic``).
    """
    steps = _path(Step(path, reason) if isinstance(path, JobStatus) else path)
    params = _move_params(
        steps,
        actor=actor,
        lease_token=lease_token,
        lease_owner=lease_owner,
        lease_ttl_seconds=lease_ttl_seconds,
        result=result,
        error=error,
        not_before=not_before,
        details=details,
        dead_letter_reason=dead_letter_reason,
    )
    params["job_id"] = job_id
    sql = _statement(
        tuple(s.to for s in steps), lease_token is not None, require_lease_expired, require_due
    )
    with _atomic(conn, steps, in_run):
        row = run_statement(conn, sql, params)
        if row is not None and row["id"] is not None:
            _settle(conn, [row], released)
    if row is None:
        raise JobNotFound(job_id)
    if row["id"] is None:
        current = JobStatus(row["current_status"])
        if current not in allowed_sources(steps[0].to):
            raise InvalidTransition(job_id, current.value, steps[0].to.value)
        if lease_token is not None and row["current_token"] != lease_token:
            raise StaleLease(job_id, lease_token, row["current_token"])
        if require_lease_expired:
            raise LeaseNotExpired(job_id)
        raise NotDue(job_id)
    return TransitionResult(job=job_from_row(row), from_status=JobStatus(row["from_status"]))


def _birth_status(new: NewJob) -> JobStatus:
    """A job with a start time waits for it in ``pending``; any other is eligible at once."""
    return JobStatus.PENDING if new.not_before else JobStatus.SCHEDULED


def create_job(
    conn: Connection,
    new: NewJob,
    *,
    schedule: bool,
    actor: str = SYSTEM_ACTOR,
    request_hash: str | None = None,
    reason: str | None = "submitted",
    dispatching: bool = False,
    rate_limit_slots: Sequence[Mapping[str, Any]] | None = None,
    lease: Mapping[str, Any] | None = None,
) -> Job | None:
    """Insert a job, born ``scheduled`` with ``schedule`` and ``pending`` without.

    ``dispatching`` promises a publish right after commit (see ``store.queries.CREATE_JOB``).
    ``rate_limit_slots`` (``limits.admission.slots_wanted``): the buckets it draws from, its
    slots taken in the same statement, which may hold it ``pending`` (see
    ``store.limits_queries.CREATE_JOB_LIMITED``); ``lease``, the conditions of tokens drawn
    from the process's leases (``limits.leases.Drawn.params``), which write nothing when they
    no longer hold.
    Returns None when the tenant already used ``new.idempotency_key``, or ``lease`` does not
    hold; the caller decides whether that is the same request (return the original) or a
    conflict.
    """
    params: dict[str, Any] = {
        "tenant_id": new.tenant_id,
        "project_id": new.project_id,
        "type": new.type,
        "queue": new.queue,
        "priority": new.priority,
        "payload": _json(new.payload),
        "to_status": (JobStatus.SCHEDULED if schedule else JobStatus.PENDING).value,
        "retry_policy": _json(new.retry_policy),
        "not_before": new.not_before,
        "idempotency_key": new.idempotency_key,
        "request_hash": request_hash,
        "time_limit_seconds": new.time_limit_seconds,
        "scheduled_for": new.scheduled_for,
        "dispatching": dispatching,
        "actor": actor,
        "reason": reason,
    }
    statement = queries.CREATE_JOB
    if rate_limit_slots:
        statement = (
            limits_queries.CREATE_JOB_LIMITED_KEYED
            if new.idempotency_key
            else limits_queries.CREATE_JOB_LIMITED
        )
        params["wanted"] = json.dumps(list(rate_limit_slots), separators=(",", ":"))
    elif lease is not None:
        statement = limits_queries.CREATE_JOB_LEASED
        params.update(lease)
    row = run_statement(conn, statement, params)
    return None if row is None else job_from_row(row)


def create_jobs(
    conn: Connection,
    jobs: Sequence[NewJob],
    *,
    actor: str = SYSTEM_ACTOR,
    reason: str | None = "submitted",
    dispatching: bool = False,
    births: Sequence[tuple[str, Mapping[str, Any]]] | None = None,
    lease: Mapping[str, Any] | None = None,
) -> list[Job]:
    """Insert many jobs in one statement, in order; each is born ``scheduled`` unless it has
    a ``not_before``. Jobs with idempotency keys go through ``create_job`` instead.
    ``births``, one per job: the reason and details of each birth row, where they differ
    (a batch that rate limits hold). ``lease`` as for ``create_job``: none is written (an
    empty list) when it no longer holds."""
    if not jobs:
        return []
    if any(new.idempotency_key for new in jobs):
        raise ValueError("create_jobs takes jobs without idempotency keys")
    records = [
        {
            "tenant_id": n.tenant_id,
            "project_id": n.project_id,
            "type": n.type,
            "queue": n.queue,
            "priority": n.priority,
            "payload": n.payload,
            "status": _birth_status(n).value,
            "retry_policy": n.retry_policy,
            "not_before": None if n.not_before is None else n.not_before.isoformat(),
            "time_limit_seconds": n.time_limit_seconds,
            "scheduled_for": None if n.scheduled_for is None else n.scheduled_for.isoformat(),
        }
        for n in jobs
    ]
    statement = queries.CREATE_JOBS if lease is None else queries.CREATE_JOBS_LEASED
    if births is not None:
        statement = queries.CREATE_JOBS_EXPLAINED
        for record, (why, details) in zip(records, births, strict=True):
            record.update(reason=why, details=dict(details))
    params: dict[str, Any] = {
        "jobs": json.dumps(records, separators=(",", ":")),
        "dispatching": dispatching,
        "actor": actor,
        "reason": reason,
        "details": None,
        **(lease or {}),
    }
    rows = run_all(conn, statement, params)
    if lease is not None and not rows:
        return []
    return [born_job(new, row) for new, row in zip(jobs, rows, strict=True)]


def transition_many(
    conn: Connection,
    job_ids: Sequence[int],
    path: Step | Sequence[Step],
    *,
    actor: str = SYSTEM_ACTOR,
    lease_owner: str | None = None,
    lease_ttl_seconds: float = 30.0,
    require_due: bool = False,
    details: Mapping[str, Any] | None = None,
    released: list[Released] | None = None,
) -> list[Job]:
    """Move every job of ``job_ids`` that may take ``path``, in one statement; returns those
    moved, by id. The others are left as they are and not reported: a worker claiming a chunk
    of jobs takes what is still claimable, as a claim of one job would refuse the rest.

    Moves that need a fencing token go through ``finish_many``; each job's token is its own.
    """
    if not job_ids:
        return []
    steps = _path(path)
    with _atomic(conn, steps, None):
        rows = _move_many(
            conn,
            job_ids,
            steps,
            actor=actor,
            lease_owner=lease_owner,
            lease_ttl_seconds=lease_ttl_seconds,
            require_due=require_due,
            details=details,
        )
        _settle(conn, rows, released)
    return [job_from_row(row) for row in rows]


def _move_many(
    conn: Connection,
    job_ids: Sequence[int],
    steps: Sequence[Step],
    *,
    actor: str,
    lease_owner: str | None = None,
    lease_ttl_seconds: float = 30.0,
    require_due: bool = False,
    details: Mapping[str, Any] | None = None,
    settled: bool = False,
) -> list[dict[str, Any]]:
    params = _move_params(
        steps,
        actor=actor,
        lease_owner=lease_owner,
        lease_ttl_seconds=lease_ttl_seconds,
        details=details,
    )
    params["job_ids"] = sorted(set(job_ids))
    sql = _statement(tuple(s.to for s in steps), False, False, require_due, True, settled=settled)
    return run_all(conn, sql, params)


@dataclass(frozen=True, slots=True)
class Held:
    """A job a worker holds under ``token``, finishing with ``result`` (when it completes)."""

    job_id: int
    token: int
    result: Any = None
    in_run: bool | None = None
    """Whether the job belongs to a run (its claim says; None: not known). A run's job
    settles its run when it finishes, in the same transaction (``_settle``)."""


def finish_many(
    conn: Connection,
    held: Sequence[Held],
    path: Step | Sequence[Step],
    *,
    actor: str,
    released: list[Released] | None = None,
) -> list[Job]:
    """Move many held jobs along ``path`` in one statement, each fenced by its own token and
    given its own result; returns those moved, by id. A job missing from the answer lost its
    lease or moved on: its fence refused it, as ``transition`` would have one by one. Jobs
    of runs settle as ``transition``'s do, their released children appended to ``released``.
    """
    if not held:
        return []
    steps = _path(path)
    if any(s.to in (JobStatus.CLAIMED, JobStatus.FAILED) for s in steps):
        raise ValueError("finish_many takes no claims or failures: each needs its own call")
    by_id = {h.job_id: h for h in held}
    if len(by_id) != len(held):
        raise ValueError("finish_many takes each job once")
    ordered = [by_id[i] for i in sorted(by_id)]
    targets = tuple(s.to for s in steps)
    in_run = None if any(h.in_run is None for h in held) else any(h.in_run for h in held)
    rows: list[dict[str, Any]] = []
    if in_run and targets[-1] in FINAL_STATES:
        # Most jobs of a run have no children: those finish, and count in their runs, in
        # one statement with no transaction around it; only parents (and jobs the fence
        # refused, which it refuses again) take the settling transaction below.
        leaves = _statement(targets, True, False, False, held=True, leaves=True)
        rows = run_all(conn, leaves, _held_params(steps, ordered, actor))
        finished = {row["id"] for row in rows}
        ordered = [h for h in ordered if h.job_id not in finished and h.in_run]
    if ordered:
        sql = _statement(targets, True, False, False, held=True)
        with _atomic(conn, steps, in_run):
            settled = run_all(conn, sql, _held_params(steps, ordered, actor))
            _settle(conn, settled, released)
        rows = sorted([*rows, *settled], key=lambda row: int(row["id"]))
    return [job_from_row(row) for row in rows]


def _held_params(steps: Sequence[Step], held: Sequence[Held], actor: str) -> dict[str, Any]:
    params = _move_params(steps, actor=actor)
    params.update(
        job_ids=[h.job_id for h in held],
        held_tokens=[h.token for h in held],
        held_results=[_json(h.result) for h in held],
    )
    return params


# ---- runs: the settling of a run's jobs, in the transaction that moved them ----------------


def _may_settle(steps: Sequence[Step]) -> bool:
    """Whether a path can finalize a job, or bring one back from a final state (a replay):
    the moves after which a run's counts and children change."""
    return steps[-1].to in FINAL_STATES or (
        len(steps) == 1 and steps[0].to in (JobStatus.PENDING, JobStatus.SCHEDULED)
    )


@contextmanager
def _atomic(conn: Connection, steps: Sequence[Step], in_run: bool | None) -> Iterator[None]:
    """A move that may settle a run, with its settling, in one transaction.

    The caller's transaction when there is one; on a connection in autocommit (a worker's
    ``SharedConnection``) a BEGIN … COMMIT of its own around them, so a run's children are
    never left counting a parent whose final state committed without them. A caller that
    knows none of its jobs is in a run (``in_run=False``: a worker read it in its claim, and
    a job never changes run) spares the two round trips: the move stays one statement.
    """
    driver = conn.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    idle = driver.info.transaction_status == pq.TransactionStatus.IDLE
    if in_run is not False and _may_settle(steps) and driver.autocommit and idle:
        with driver.transaction():
            yield
    else:
        yield


def _settle(
    conn: Connection, rows: Sequence[Mapping[str, Any]], released: list[Released] | None
) -> None:
    """Settle the runs and children of the moved ``rows`` (``runs.promotion``), one
    generation a round: the children a round cancels or brings back settle in the next, so a
    cancellation reaches every descendant its rule dooms, in one statement per generation
    and parent, and never by recursion however deep the run."""
    wave: Sequence[Mapping[str, Any]] = rows
    while wave:
        moves = promotion.settle(conn, wave)
        keys = {r["id"]: r.get("run_key") for r in wave}
        following: list[dict[str, Any]] = []
        for move in moves:
            moved = _move_many(
                conn,
                move.job_ids,
                [Step(move.to, move.reason)],
                actor=SYSTEM_ACTOR,
                details=move.details(keys.get(move.parent_id)),
                settled=True,
            )
            following.extend(moved)
            if released is not None and move.to is JobStatus.SCHEDULED:
                released.extend(Released.of_row(row) for row in moved)
        wave = following
