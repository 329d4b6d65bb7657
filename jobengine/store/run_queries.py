"""Every statement a run executes per job or per finishing parent, named, with its index.

Submission writes a run in a fixed number of set-based statements whatever its size: the
run row, all its jobs (through the guard's own history and outbox writer), all its edges.
Promotion reads a finishing parent's edges by ``pk_job_edges`` (parent first) and locks each
child by primary key, in id order, so two transactions finishing parents of the same
children never deadlock; a fan-in of 1,000 costs each parent one edge and one child.

Parameters use psycopg's ``%(name)s`` style; statements run through ``run_all``.
"""

from __future__ import annotations

from jobengine.store.queries import _EVENTS, BORN_COLUMNS

RUN_COLUMNS = (
    "id, tenant_id, project_id, name, status, jobs_total, jobs_completed, jobs_failed, "
    "jobs_cancelled, created_at, updated_at, completed_at, cancel_requested_at"
)

INSERT_RUN = f"""
-- name: insert_run  (uq_runs_tenant_idempotency_key)
-- An Idempotency-Key the tenant already used inserts nothing; the caller then compares the
-- request with the one stored.
INSERT INTO runs (tenant_id, project_id, name, jobs_total, idempotency_key, request_hash)
VALUES (%(tenant_id)s, %(project_id)s, %(name)s, %(jobs_total)s, %(idempotency_key)s,
        %(request_hash)s)
ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING {RUN_COLUMNS}
"""

GET_RUN_BY_IDEMPOTENCY_KEY = f"""
-- name: get_run_by_idempotency_key  (uq_runs_tenant_idempotency_key)
SELECT {RUN_COLUMNS}, request_hash FROM runs
WHERE tenant_id = %(tenant_id)s AND idempotency_key = %(idempotency_key)s
"""

GET_RUN = f"""
-- name: get_run  (pk_runs)
SELECT {RUN_COLUMNS} FROM runs WHERE id = %(run_id)s
"""

REQUEST_RUN_CANCEL = f"""
-- name: request_run_cancel  (pk_runs)
-- Marks the run as cancelled by request before its jobs are: the transaction that makes its
-- last job final then stores `cancelled`, and a concurrent spawn into it is refused.
UPDATE runs SET cancel_requested_at = now(), updated_at = now()
WHERE id = %(run_id)s AND status = 'running'
RETURNING {RUN_COLUMNS}
"""

# A run's job is born as any job is (``queries._WRITE_BIRTH``): one history row from nothing
# to its state, with its outbox event; ``details`` says who made it (a spawn names its job).
_RUN_BIRTH = (
    """
history AS (
    INSERT INTO job_history (job_id, from_status, to_status, actor, reason, attempt, details)
    SELECT moved.id, NULL, moved.status, %(actor)s, %(reason)s, 0, %(details)s::jsonb
    FROM moved
    ORDER BY moved.id
    RETURNING id, job_id, from_status, to_status, actor, reason, attempt, details, at
)"""
    + _EVENTS
)

CREATE_RUN_JOBS = (
    """
-- name: create_run_jobs
-- All jobs of a run in one statement: roots born `scheduled` (unless they wait for a
-- not_before), children born `pending` with the number of parents they wait for; each with
-- its birth's history and outbox rows. The jobs come as one JSON array and go back as what
-- Postgres gave them, as a batch's do (`queries.CREATE_JOBS`). A root the leader publishes
-- (`held`: a fair-shared queue's, a capped tenant's) is born without the dispatch mark, to
-- take its turn. A schedule's run gives each job its slot (`scheduled_for`); any other run
-- gives NULL.
WITH input AS (
    SELECT *
    FROM ROWS FROM (jsonb_to_recordset(%(jobs)s::jsonb)
                    AS (type text, queue text, priority smallint, payload jsonb,
                        status job_status, retry_policy jsonb, not_before timestamptz,
                        time_limit_seconds double precision, run_key text, trigger_rule text,
                        parents_waiting int, held boolean, scheduled_for timestamptz))
         WITH ORDINALITY AS i(type, queue, priority, payload, status, retry_policy, not_before,
                              time_limit_seconds, run_key, trigger_rule, parents_waiting, held,
                              scheduled_for, ord)
),
moved AS (
    INSERT INTO jobs (tenant_id, project_id, type, queue, priority, payload, status,
                      retry_policy, not_before, scheduled_at, dispatched_at, time_limit_seconds,
                      run_id, run_key, trigger_rule, parents_waiting, scheduled_for)
    SELECT %(tenant_id)s, %(project_id)s, type, queue, priority, payload, status, retry_policy,
           not_before, CASE WHEN status = 'scheduled' THEN now() END,
           CASE WHEN status = 'scheduled' AND %(dispatching)s AND NOT held THEN now() END,
           time_limit_seconds, %(run_id)s, run_key, trigger_rule, parents_waiting, scheduled_for
    FROM input
    ORDER BY ord
    RETURNING *
),"""
    + _RUN_BIRTH
    + f"""
SELECT {BORN_COLUMNS} FROM moved ORDER BY id
"""
)

INSERT_EDGES = """
-- name: insert_edges  (pk_job_edges)
INSERT INTO job_edges (run_id, parent_id, child_id)
SELECT %(run_id)s, e.parent_id, e.child_id
FROM unnest(%(parents)s::bigint[], %(children)s::bigint[]) AS e(parent_id, child_id)
"""

RUN_JOBS = """
-- name: run_jobs  (uq_jobs_run_id_run_key)
SELECT * FROM jobs WHERE run_id = %(run_id)s ORDER BY id
"""

RUN_EDGES = """
-- name: run_edges  (ix_job_edges_run_id)
SELECT parent_id, child_id FROM job_edges WHERE run_id = %(run_id)s ORDER BY parent_id, child_id
"""

UNFINISHED_RUN_JOBS = """
-- name: unfinished_run_jobs  (uq_jobs_run_id_run_key)
SELECT id FROM jobs
WHERE run_id = %(run_id)s AND status NOT IN ('completed', 'failed', 'cancelled')
ORDER BY id
"""

PARENT_RESULTS = """
-- name: parent_results  (ix_job_edges_child_id, primary key)
SELECT p.run_key, p.result
FROM job_edges AS e JOIN jobs AS p ON p.id = e.parent_id
WHERE e.child_id = %(job_id)s
ORDER BY p.id
"""

CHILDREN_OF_FINISHED = """
-- name: children_of_finished  (pk_job_edges by parent)
-- Parents became final: their children, each once, with how many of its parents finished in
-- this transaction and how. One index probe per parent (the OFFSET 0 keeps the planner from
-- turning the probes into a scan of every edge), so a job without children costs one probe.
SELECT e.child_id AS id, count(*)::int AS done,
       (count(*) FILTER (WHERE f.outcome <> 'completed'))::int AS failed,
       bool_or(f.outcome = 'failed') AS any_failed,
       max(f.id) AS last_parent,
       min(f.id) FILTER (WHERE f.outcome <> 'completed') AS failing_parent
FROM unnest(%(ids)s::bigint[], %(outcomes)s::job_status[]) AS f(id, outcome)
CROSS JOIN LATERAL (
    SELECT child_id FROM job_edges WHERE job_edges.parent_id = f.id OFFSET 0
) AS e
GROUP BY e.child_id
ORDER BY e.child_id
"""

COUNT_OFF_PARENTS = """
-- name: count_off_parents  (primary key)
-- Each waiting child counts off its parents that just finished, once, however many they
-- are: its counts as they will be, read under its row lock and not yet written, since most
-- children (a fan-out's, a chain's) are released at once and their move to `scheduled`
-- writes the row anyway (a scheduled job waits for no parent). The caller writes the counts
-- of those that stay (`SET_PARENT_COUNTS`). Children are locked by primary key in id order
-- (the caller sorts them), so two transactions finishing parents of the same children never
-- deadlock. A child no longer `pending` (cancelled by another parent) is left alone.
WITH hit AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(done)s::int[], %(failed)s::int[])
         AS h(id, done, failed)
)
SELECT found.id, found.trigger_rule, found.parents_waiting - hit.done AS parents_waiting,
       found.parents_failed + hit.failed AS parents_failed, found.not_before
FROM hit
CROSS JOIN LATERAL (
    SELECT id, trigger_rule, parents_waiting, parents_failed, not_before FROM jobs
    WHERE jobs.id = hit.id AND jobs.status = 'pending'
    FOR UPDATE
) AS found
ORDER BY found.id
"""

REVIVABLE_CHILDREN = """
-- name: revivable_children  (pk_job_edges by parent, ix_job_edges_child_id, primary key)
-- Children of jobs brought back from a final state (a replay) that were cancelled because an
-- upstream job failed or was cancelled, with their parents counted afresh. Edges are probed
-- per job (OFFSET 0 keeps each probe an index lookup), never scanned.
WITH reopened AS (
    SELECT DISTINCT e.child_id AS id
    FROM unnest(%(ids)s::bigint[]) AS r(id)
    CROSS JOIN LATERAL (
        SELECT child_id FROM job_edges WHERE job_edges.parent_id = r.id OFFSET 0
    ) AS e
),
candidates AS (
    SELECT j.id, j.trigger_rule
    FROM reopened
    CROSS JOIN LATERAL (
        SELECT id, trigger_rule, status FROM jobs WHERE jobs.id = reopened.id OFFSET 0
    ) AS j
    WHERE j.status = 'cancelled'
      AND (SELECT h.reason FROM job_history AS h WHERE h.job_id = j.id
           ORDER BY h.id DESC LIMIT 1) IN ('upstream_failed', 'upstream_cancelled')
)
SELECT c.id, c.trigger_rule,
       (count(*) FILTER (WHERE p.status NOT IN ('completed', 'failed', 'cancelled')))::int
           AS waiting,
       (count(*) FILTER (WHERE p.status IN ('failed', 'cancelled')))::int AS failed
FROM candidates AS c
CROSS JOIN LATERAL (
    SELECT parent_id FROM job_edges WHERE job_edges.child_id = c.id OFFSET 0
) AS e
CROSS JOIN LATERAL (SELECT status FROM jobs WHERE jobs.id = e.parent_id OFFSET 0) AS p
GROUP BY c.id, c.trigger_rule
ORDER BY c.id
"""

SET_PARENT_COUNTS = """
-- name: set_parent_counts  (primary key)
UPDATE jobs AS j SET parents_waiting = c.waiting, parents_failed = c.failed, updated_at = now()
FROM unnest(%(ids)s::bigint[], %(waiting)s::int[], %(failed)s::int[]) AS c(id, waiting, failed)
WHERE j.id = c.id
"""

_FINAL_AFTER = (
    "r.jobs_completed + d.completed + r.jobs_failed + d.failed + r.jobs_cancelled + d.cancelled"
)
_TOTAL_AFTER = "r.jobs_total + d.added"

_LOCK_RUNS = """
    SELECT found.id, {d}.completed, {d}.failed, {d}.cancelled, {d}.added
    FROM unnest(ARRAY(SELECT run_id FROM {d} ORDER BY run_id)) AS wanted(id)
    JOIN {d} ON {d}.run_id = wanted.id
    CROSS JOIN LATERAL (SELECT id FROM runs WHERE runs.id = wanted.id FOR UPDATE) AS found
"""
"""The runs a count changes, locked in id order, with what changes in each (``{d}``: the
statement's delta of run_id, completed, failed, cancelled, added)."""

_RUN_STATUS_AFTER = f"""jobs_total = {_TOTAL_AFTER},
    jobs_completed = r.jobs_completed + d.completed,
    jobs_failed = r.jobs_failed + d.failed,
    jobs_cancelled = r.jobs_cancelled + d.cancelled,
    status = (CASE WHEN {_FINAL_AFTER} < {_TOTAL_AFTER} THEN 'running'
                   WHEN r.cancel_requested_at IS NOT NULL THEN 'cancelled'
                   WHEN r.jobs_failed + d.failed > 0 THEN 'failed'
                   ELSE 'completed' END)::run_status,
    completed_at = CASE WHEN {_FINAL_AFTER} < {_TOTAL_AFTER} THEN NULL
                        ELSE coalesce(r.completed_at, now()) END,
    updated_at = now()"""
"""A run's counts and the status they give, from ``r`` (the row the UPDATE locked) and ``d``
(what changed); shared by the two statements that count."""

UPDATE_RUN_COUNTS = f"""
-- name: update_run_counts  (pk_runs)
-- A run's counts of final jobs move with the transactions that finalize (or, by a replay,
-- reopen) them; its status follows: `running` while some job is not final, then
-- `cancelled` when a user asked for it, `failed` when a job failed, else `completed`. Every
-- value is computed from `r`, the row the UPDATE itself locked, so a count that waited for
-- another transaction's adds to what that one wrote.
WITH delta AS (
    SELECT * FROM unnest(%(run_ids)s::bigint[], %(completed)s::int[], %(failed)s::int[],
                         %(cancelled)s::int[], %(added)s::int[])
         AS d(run_id, completed, failed, cancelled, added)
),
locked AS ({_LOCK_RUNS.format(d="delta")})
UPDATE runs AS r
SET {_RUN_STATUS_AFTER}
FROM locked AS d
WHERE r.id = d.id
RETURNING {", ".join("r." + col.strip() for col in RUN_COLUMNS.split(","))}
"""

FENCE_LEAF = """
      AND (j.run_id IS NULL
           OR NOT EXISTS (SELECT 1 FROM job_edges AS e WHERE e.parent_id = locked.id))"""
"""Added to a worker's batched completion (``guard.finish_many``): only jobs without children
(``pk_job_edges``, parent first) finish in it; a parent's children are settled by a
transaction of its own (``guard._settle``). Edges are written with their run, or by a job's
own spawn, which commits while the job runs and so before its completion reads them."""

RUN_COUNTS_OF_MOVED = f""",
-- The runs of the jobs this statement finished count them, in the same statement: a job
-- without children settles nothing else, so its completion needs no transaction around it.
-- Runs are locked in id order, as `update_run_counts` locks them.
run_delta AS (
    SELECT moved.run_id,
           (count(*) FILTER (WHERE moved.status = 'completed'))::int AS completed,
           (count(*) FILTER (WHERE moved.status = 'failed'))::int AS failed,
           (count(*) FILTER (WHERE moved.status = 'cancelled'))::int AS cancelled,
           0 AS added
    FROM moved
    WHERE moved.run_id IS NOT NULL
      AND moved.from_status NOT IN ('completed', 'failed', 'cancelled')
    GROUP BY moved.run_id
),
run_locked AS ({_LOCK_RUNS.format(d="run_delta")}),
run_counts AS (
    UPDATE runs AS r
    SET {_RUN_STATUS_AFTER}
    FROM run_locked AS d
    WHERE r.id = d.id
    RETURNING r.id
)"""

LOCK_SPAWNER = """
-- name: lock_spawner  (primary key)
-- The running job that asks to spawn, fenced by its lease token: a worker that lost its
-- lease adds nothing to the run.
SELECT j.id, j.run_id, j.run_key, j.tenant_id, j.project_id, j.lease_token, j.status
FROM jobs AS j WHERE j.id = %(job_id)s
FOR UPDATE
"""

OPEN_RUN_FOR_SPAWN = """
-- name: open_run_for_spawn  (pk_runs)
SELECT id FROM runs
WHERE id = %(run_id)s AND status = 'running' AND cancel_requested_at IS NULL
FOR UPDATE
"""

SPAWNER_CHILDREN = """
-- name: spawner_children  (pk_job_edges by parent)
SELECT child_id FROM job_edges WHERE parent_id = %(job_id)s ORDER BY child_id
"""

ADD_PARENT = """
-- name: add_parent  (primary key)
-- A spawned job becomes one more parent of its spawner's children still waiting.
UPDATE jobs SET parents_waiting = parents_waiting + 1, updated_at = now()
WHERE id = ANY(%(ids)s::bigint[]) AND status = 'pending'
RETURNING id
"""

JOB_BY_RUN_KEY = """
-- name: job_by_run_key  (uq_jobs_run_id_run_key, ix_job_history_job_id_id)
-- With the job that spawned it, if one did: a retried handler spawning the same key again
-- finds its own earlier spawn.
SELECT j.*, (SELECT (h.details->>'spawned_by')::bigint FROM job_history AS h
             WHERE h.job_id = j.id ORDER BY h.id LIMIT 1) AS spawned_by
FROM jobs AS j WHERE j.run_id = %(run_id)s AND j.run_key = %(run_key)s
"""

EDGES_INTO = """
-- name: edges_into  (pk_job_edges)
INSERT INTO job_edges (run_id, parent_id, child_id)
SELECT %(run_id)s, %(parent_id)s, child_id FROM unnest(%(children)s::bigint[]) AS c(child_id)
"""
