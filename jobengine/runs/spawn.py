"""Dynamic fan-out: a running handler adds jobs to its own run (``ctx.spawn``).

The spawn is written under the spawning job's lease: its row is locked and its token must
be the one the worker holds, so a worker that lost its lease adds nothing. A spawned job is
released at once (``scheduled``, or ``pending`` until its ``not_before``), and it becomes
one more parent of every child the spawner has that still waits: what was planned to follow
the spawner now follows the work it fanned out too. The spawner itself is not its parent
(it is running; a parent is waited for), so in the graph a spawned job sits beside its
spawner, and its first history row names the spawner (``details.spawned_by``).

A job that is not in a run cannot spawn: there is no run to add to and no edge to keep, so
the refusal says to submit the work as a run.
"""

from __future__ import annotations

from sqlalchemy import Connection

from jobengine.domain.job import Job
from jobengine.domain.run import RunJobSpec
from jobengine.errors import JobNotFound, StaleLease
from jobengine.runs import promotion
from jobengine.runs.errors import DuplicateRunKey, SpawnRefused
from jobengine.runs.service import JobValidator, RunJobs, create_run_jobs, new_job
from jobengine.store import run_queries
from jobengine.store.database import run_all, run_statement
from jobengine.store.rows import job_from_row


def spawn(
    conn: Connection,
    spawner_id: int,
    lease_token: int,
    job: RunJobSpec,
    *,
    actor: str,
    validate_job: JobValidator,
    dispatching: bool = False,
) -> tuple[Job, bool]:
    """Add ``job`` to the run of the running job ``spawner_id`` (held under ``lease_token``),
    in the caller's transaction; returns it and whether it is new. A retried attempt that
    spawns the same key again gets the job its earlier attempt spawned."""
    spawner = run_statement(conn, run_queries.LOCK_SPAWNER, {"job_id": spawner_id})
    if spawner is None:
        raise JobNotFound(spawner_id)
    if spawner["lease_token"] != lease_token or spawner["status"] != "running":
        raise StaleLease(spawner_id, lease_token, spawner["lease_token"])
    run_id = spawner["run_id"]
    if run_id is None:
        raise SpawnRefused(
            f"job {spawner_id} is not part of a run, so it has no run to add {job.key!r} to",
            hint="Submit the work as a run (POST /api/v1/runs, `jobengine runs submit`, "
            "enqueue_run) to let its handlers spawn jobs; or submit an independent job.",
        )
    if run_statement(conn, run_queries.OPEN_RUN_FOR_SPAWN, {"run_id": run_id}) is None:
        raise SpawnRefused(
            f"run {run_id} is finishing or was cancelled: nothing more can join it",
            hint="Let the handler end; the run's cancellation stops it soon.",
        )
    existing = run_statement(
        conn, run_queries.JOB_BY_RUN_KEY, {"run_id": run_id, "run_key": job.key}
    )
    if existing is not None:
        if existing["spawned_by"] == spawner_id and existing["type"] == job.type:
            return job_from_row(existing), False
        raise DuplicateRunKey(job.key)
    checked = validate_job(new_job(spawner["tenant_id"], spawner["project_id"], job))
    (spawned,) = create_run_jobs(
        conn,
        run_id,
        RunJobs([checked], (job,), (0,)),
        actor=actor,
        dispatching=dispatching,
        reason=f"spawned by job {spawner_id} ({spawner['run_key']})",
        details={"spawned_by": spawner_id},
    )
    waiting = [
        r["child_id"] for r in run_all(conn, run_queries.SPAWNER_CHILDREN, {"job_id": spawner_id})
    ]
    if waiting:
        adopted = run_all(conn, run_queries.ADD_PARENT, {"ids": waiting})
        children = sorted(r["id"] for r in adopted)
        if children:
            run_all(
                conn,
                run_queries.EDGES_INTO,
                {"run_id": run_id, "parent_id": spawned.id, "children": children},
            )
    promotion.count_runs(conn, [], [], added={run_id: 1})
    return spawned, True
