"""Runs as the API, the client, the CLI and producers use them: submit, read, list, cancel.

Every function takes the caller's Connection and none commits: the request, the producer's
own transaction or the CLI's unit of work decides. Submission plans the run first
(``runs.planner``) and validates every job the way single jobs are (``submission.validate``),
so a refused run writes no row at all.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import Connection, select

from config.settings import get_settings
from jobengine import guard, tracing
from jobengine.catalogue import catalogue_of
from jobengine.domain.job import Job, NewJob
from jobengine.domain.run import Run, RunGraph, RunJobSpec, RunSpec, TriggerRule
from jobengine.domain.status import JobStatus, RunStatus
from jobengine.errors import DuplicateIdempotencyKey, ValidationError
from jobengine.quotas.admission import check_quotas
from jobengine.quotas.book import Book, book
from jobengine.runs import planner, promotion
from jobengine.runs.errors import RunAlreadyFinal, RunNotFound
from jobengine.store import run_queries
from jobengine.store.database import run_all, run_statement
from jobengine.store.models import RunRow
from jobengine.store.rows import born_job, job_from_row
from jobengine.submission import validate

JobValidator = Callable[[NewJob], NewJob]
"""Checks one job as ``submission.validate`` does and returns it with its defaults."""

RUN_CANCELLED = "run cancelled"
_runs = RunRow.__table__


def run_from_row(row: Mapping[Any, Any]) -> Run:
    return Run(
        id=row["id"],
        tenant_id=row["tenant_id"],
        project_id=row["project_id"],
        name=row["name"],
        status=RunStatus(row["status"]),
        jobs_total=row["jobs_total"],
        jobs_completed=row["jobs_completed"],
        jobs_failed=row["jobs_failed"],
        jobs_cancelled=row["jobs_cancelled"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        completed_at=row["completed_at"],
        cancel_requested_at=row["cancel_requested_at"],
    )


def default_validator(conn: Connection) -> JobValidator:
    """The validation of single jobs, with this installation's settings and catalogue."""
    return partial(
        validate, max_payload_bytes=get_settings().max_payload_bytes, types=catalogue_of(conn)
    )


def new_job(
    tenant_id: str, project_id: str, job: RunJobSpec, scheduled_for: datetime | None = None
) -> NewJob:
    return NewJob(
        type=job.type,
        payload={} if job.payload is None else job.payload,
        tenant_id=tenant_id,
        project_id=project_id,
        queue=job.queue or "default",
        priority=job.priority,
        retry_policy=job.retry_policy,
        not_before=job.not_before,
        time_limit_seconds=job.time_limit_seconds,
        scheduled_for=scheduled_for,
    )


def request_hash(spec: RunSpec) -> str:
    """Fingerprint of what was asked, to tell a retried request from a conflicting one."""
    body = {
        "project_id": spec.project_id,
        "name": spec.name,
        "jobs": [
            {
                "key": j.key,
                "type": j.type,
                "payload": j.payload,
                "queue": j.queue,
                "priority": j.priority,
                "retry_policy": j.retry_policy,
                "time_limit_seconds": j.time_limit_seconds,
                "not_before": j.not_before.isoformat() if j.not_before else None,
                "trigger_rule": TriggerRule(j.trigger_rule).value,
            }
            for j in spec.jobs
        ],
        "edges": [list(e) for e in spec.edges],
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True, slots=True)
class RunJobs:
    """Jobs to be born into a run: each checked job, its place in the run, and how many
    parents it waits for (``planner.Plan.parents``)."""

    checked: Sequence[NewJob]
    specs: Sequence[RunJobSpec]
    parents: Sequence[int]

    def records(self, quotas: Book) -> str:
        """``CREATE_RUN_JOBS``'s one JSON parameter: a root is scheduled at once unless it
        waits for a ``not_before``; every other job waits for its parents. ``held``: the
        leader publishes it (``quotas``: a fair-shared queue's, a capped tenant's)."""
        return json.dumps(
            [
                {
                    "type": n.type,
                    "queue": n.queue,
                    "priority": n.priority,
                    "payload": n.payload,
                    "status": (
                        JobStatus.SCHEDULED
                        if p == 0 and n.not_before is None
                        else JobStatus.PENDING
                    ).value,
                    "retry_policy": n.retry_policy,
                    "not_before": None if n.not_before is None else n.not_before.isoformat(),
                    "time_limit_seconds": n.time_limit_seconds,
                    "run_key": s.key,
                    "trigger_rule": TriggerRule(s.trigger_rule).value,
                    "parents_waiting": p,
                    "held": quotas.held_back(n.tenant_id, n.queue),
                    "scheduled_for": None
                    if n.scheduled_for is None
                    else n.scheduled_for.isoformat(),
                }
                for n, s, p in zip(self.checked, self.specs, self.parents, strict=True)
            ],
            separators=(",", ":"),
        )


def create_run_jobs(
    conn: Connection,
    run_id: int,
    jobs: RunJobs,
    *,
    actor: str,
    dispatching: bool,
    reason: str = "submitted",
    details: Mapping[str, Any] | None = None,
) -> list[Job]:
    """Insert jobs of a run in one statement, each born as the guard's creation path
    bears a job: one history row and its outbox event. Roots of a fair-shared queue or a
    capped tenant are left unmarked for the leader to publish in their turn
    (``jobengine.quotas``), whatever ``dispatching`` promises."""
    rows = run_all(
        conn,
        run_queries.CREATE_RUN_JOBS,
        {
            "jobs": jobs.records(book(conn)),
            "run_id": run_id,
            "tenant_id": jobs.checked[0].tenant_id,
            "project_id": jobs.checked[0].project_id,
            "dispatching": dispatching,
            "actor": actor,
            "reason": reason,
            "details": _json(dict(details or {})),
        },
    )
    return [
        born_job(
            new,
            row,
            run_id=run_id,
            run_key=spec.key,
            trigger_rule=TriggerRule(spec.trigger_rule).value,
        )
        for new, spec, row in zip(jobs.checked, jobs.specs, rows, strict=True)
    ]


def submit_run_created(
    conn: Connection,
    spec: RunSpec,
    *,
    actor: str,
    dispatching: bool = False,
    validate_job: JobValidator | None = None,
    scheduled_for: datetime | None = None,
) -> tuple[Run, list[Job], bool]:
    """``submit_run``, also saying whether the run is new (False: an idempotent repeat)."""
    plan = planner.plan(spec)
    if not spec.name.strip():
        raise ValidationError("a run needs a name", hint="Name the run, e.g. 'nightly-etl'.")
    check = validate_job or default_validator(conn)
    checked = [
        check(new_job(spec.tenant_id, spec.project_id, job, scheduled_for)) for job in spec.jobs
    ]
    check_quotas(conn, checked)  # a run's jobs count against its tenant's quota, all or none
    fingerprint = request_hash(spec) if spec.idempotency_key else None
    row = run_statement(
        conn,
        run_queries.INSERT_RUN,
        {
            "tenant_id": spec.tenant_id,
            "project_id": spec.project_id,
            "name": spec.name,
            "jobs_total": len(spec.jobs),
            "idempotency_key": spec.idempotency_key,
            "request_hash": fingerprint,
        },
    )
    if row is None:
        return (*_existing(conn, spec, fingerprint), False)
    run = run_from_row(row)
    with tracing.submitting(conn, "submit_run", queue=None, jobs=len(checked), actor=actor) as s:
        s.set_attribute("jobengine.run.id", run.id)
        jobs = create_run_jobs(
            conn,
            run.id,
            RunJobs(checked, spec.jobs, plan.parents),
            actor=actor,
            dispatching=dispatching,
        )
    if plan.edges:
        run_all(
            conn,
            run_queries.INSERT_EDGES,
            {
                "run_id": run.id,
                "parents": [jobs[p].id for p, _ in plan.edges],
                "children": [jobs[c].id for _, c in plan.edges],
            },
        )
    return run, jobs, True


def submit_run(
    conn: Connection,
    spec: RunSpec,
    *,
    actor: str,
    dispatching: bool = False,
    validate_job: JobValidator | None = None,
    scheduled_for: datetime | None = None,
) -> tuple[Run, list[Job]]:
    """Store a run, its jobs and its edges in the caller's transaction; the jobs in spec
    order. Roots are ``scheduled`` (``dispatching`` promises their publish after commit),
    children ``pending``. An Idempotency-Key the tenant used before with the same request
    returns that run; with a different one it raises ``DuplicateIdempotencyKey``.
    ``scheduled_for``, the slot of the schedule creating the run, is every job's
    ``ctx.scheduled_for``.
    """
    run, jobs, _ = submit_run_created(
        conn,
        spec,
        actor=actor,
        dispatching=dispatching,
        validate_job=validate_job,
        scheduled_for=scheduled_for,
    )
    return run, jobs


def _existing(conn: Connection, spec: RunSpec, fingerprint: str | None) -> tuple[Run, list[Job]]:
    row = run_statement(
        conn,
        run_queries.GET_RUN_BY_IDEMPOTENCY_KEY,
        {"tenant_id": spec.tenant_id, "idempotency_key": spec.idempotency_key},
    )
    if row is None:
        raise DuplicateIdempotencyKey(
            f"idempotency key {spec.idempotency_key!r} is being used by a concurrent request"
        )
    if row["request_hash"] != fingerprint:
        raise DuplicateIdempotencyKey(
            f"idempotency key {spec.idempotency_key!r} was already used with a different run"
        )
    run = run_from_row(row)
    by_key = {job.run_key: job for job in _run_jobs(conn, run.id)}
    return run, [by_key[j.key] for j in spec.jobs]


def _run_jobs(conn: Connection, run_id: int) -> list[Job]:
    return [job_from_row(r) for r in run_all(conn, run_queries.RUN_JOBS, {"run_id": run_id})]


def get_run(conn: Connection, run_id: int, tenant_id: str | None = None) -> Run:
    """The run; ``RunNotFound`` also when it belongs to another tenant than ``tenant_id``."""
    row = run_statement(conn, run_queries.GET_RUN, {"run_id": run_id})
    if row is None or (tenant_id is not None and row["tenant_id"] != tenant_id):
        raise RunNotFound(run_id)
    return run_from_row(row)


def run_graph(conn: Connection, run_id: int, tenant_id: str | None = None) -> RunGraph:
    run = get_run(conn, run_id, tenant_id)
    edges = run_all(conn, run_queries.RUN_EDGES, {"run_id": run_id})
    return RunGraph(
        run=run,
        jobs=_run_jobs(conn, run_id),
        edges=[(e["parent_id"], e["child_id"]) for e in edges],
    )


def list_runs(
    conn: Connection,
    tenant_id: str | None,
    *,
    status: RunStatus | None = None,
    project_id: str | None = None,
    name: str | None = None,
    after_id: int = 0,
    limit: int = 100,
) -> list[Run]:
    """Runs in ascending id order after ``after_id`` (keyset pagination), filtered; served by
    ``ix_runs_tenant_id_status_id`` and ``ix_runs_tenant_id_id``."""
    query = select(_runs).where(_runs.c.id > after_id)
    if tenant_id is not None:
        query = query.where(_runs.c.tenant_id == tenant_id)
    if status is not None:
        query = query.where(_runs.c.status == RunStatus(status))
    if project_id is not None:
        query = query.where(_runs.c.project_id == project_id)
    if name is not None:
        query = query.where(_runs.c.name == name)
    rows = conn.execute(query.order_by(_runs.c.id).limit(limit)).mappings().all()
    return [run_from_row(r) for r in rows]


def cancel_run(
    conn: Connection,
    run_id: int,
    *,
    tenant_id: str | None,
    actor: str,
    reason: str | None,
) -> tuple[Run, list[Job]]:
    """Cancel every job of the run that is not final; the run ends ``cancelled`` in the same
    transaction. Returns the run and the jobs cancelled: those that were claimed or running
    still have a handler at work, which the caller revokes after commit (``revocable``)."""
    current = get_run(conn, run_id, tenant_id)
    if run_statement(conn, run_queries.REQUEST_RUN_CANCEL, {"run_id": run_id}) is None:
        raise RunAlreadyFinal(run_id, current.status.value)
    unfinished = [
        r["id"] for r in run_all(conn, run_queries.UNFINISHED_RUN_JOBS, {"run_id": run_id})
    ]
    cancelled = guard.transition_many(
        conn,
        unfinished,
        guard.Step(JobStatus.CANCELLED, reason or RUN_CANCELLED),
        actor=actor,
        details={"run_id": run_id},
    )
    # Jobs that finished while this ran were counted by their own transactions; this sets
    # the status from the counts as they now stand.
    promotion.count_runs(conn, [], [], added={run_id: 0})
    return get_run(conn, run_id), cancelled


def revocable(jobs: list[Job]) -> list[Job]:
    """Of the jobs ``cancel_run`` cancelled, those an attempt had started: a worker may still
    be running their handler (their task id is ``task_id_for(id, attempt)``; revoking that of
    an attempt long over is harmless)."""
    return [job for job in jobs if job.started_at is not None]


def parent_results(conn: Connection, job_id: int) -> dict[str, Any]:
    """Each parent's result by its run key (None for a parent that returned nothing)."""
    rows = run_all(conn, run_queries.PARENT_RESULTS, {"job_id": job_id})
    return {r["run_key"]: r["result"] for r in rows}
