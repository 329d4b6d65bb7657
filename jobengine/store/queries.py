"""Every statement that runs per job, in one place, each named and served by an index.

The guard's statement is a template: the transition table decides which states a target may be
reached from, and ``EFFECTS`` says which columns each target state sets. A path of several
steps (``scheduled → claimed → running``, ``running → failed → scheduled``) is one UPDATE
writing one history row and one outbox event per step, all in one round trip.

Parameters use psycopg's ``%(name)s`` style; statements run through ``exec_driver_sql``.
"""

from __future__ import annotations

from jobengine.domain.status import JobStatus

LEASE_CLEARED = {"lease_owner": "NULL", "lease_expires_at": "NULL"}
LEASE_EXTENDED = "now() + make_interval(secs => %(lease_ttl)s)"

EFFECTS: dict[JobStatus, dict[str, str]] = {
    # A run's child cancelled for an upstream failure, back to waiting when that upstream job
    # is replayed (``runs.promotion``): no longer final.
    JobStatus.PENDING: {"completed_at": "NULL"},
    JobStatus.SCHEDULED: {
        # A job handed back before its handler ran (claimed, or started with its chunk) gets
        # its attempt back: the claim counted one that never ran. Only a direct move does; a
        # path through `failed` is a retry of an attempt that did run. The lease token stays
        # incremented, so fencing still holds.
        "attempt": "CASE WHEN locked.status IN ('claimed', 'running')"
        " AND cardinality(%(step_to)s::job_status[]) = 1 THEN j.attempt - 1 ELSE j.attempt END",
        "scheduled_at": "now()",
        "not_before": "%(not_before)s",
        "completed_at": "NULL",
        "dispatched_at": "NULL",
        # A scheduled job waits for no parent: a run's child released by its last parent's
        # transaction has its count written here, by the move (``runs.promotion``).
        "parents_waiting": "0",
        **LEASE_CLEARED,
    },
    JobStatus.CLAIMED: {
        "attempt": "j.attempt + 1",
        "lease_token": "j.lease_token + 1",
        "lease_owner": "%(lease_owner)s",
        "lease_expires_at": LEASE_EXTENDED,
    },
    JobStatus.RUNNING: {
        "started_at": "now()",
        "lease_expires_at": LEASE_EXTENDED,
    },
    JobStatus.COMPLETED: {
        "result": "%(result)s::jsonb",
        "completed_at": "now()",
        **LEASE_CLEARED,
    },
    JobStatus.FAILED: {
        "last_error": "%(error)s::jsonb",
        "completed_at": "now()",
        **LEASE_CLEARED,
    },
    JobStatus.CANCELLED: {
        "completed_at": "now()",
        **LEASE_CLEARED,
    },
}
"""Columns each target state sets. ``pending`` is entered at creation, and by a run's child
brought back by a replay (``cancelled → pending``)."""

JOB_COLUMNS = (
    "id, tenant_id, project_id, type, queue, priority, payload, status, attempt, retry_policy, "
    "not_before, lease_owner, lease_token, lease_expires_at, idempotency_key, result, "
    "last_error, progress, created_at, updated_at, scheduled_at, started_at, completed_at, "
    "dispatched_at, time_limit_seconds, budget_start_attempt, run_id, run_key, trigger_rule, "
    "scheduled_for, traceparent"
)

FENCE_TOKEN = "\n      AND locked.lease_token = %(lease_token)s"
FENCE_LEASE_EXPIRED = "\n      AND locked.lease_expires_at < now()"
FENCE_DUE = (
    "\n      AND (locked.not_before IS NULL OR locked.not_before <= now() + interval '2 seconds')"
)
"""Due, with two seconds' grace for clock skew between a worker's ETA and Postgres."""

# History rows for a path of steps, for every row a transition `moved`. A row takes every step
# of the path up to the one that reached its status. A failed step's row carries the error's
# code, class and message, so each attempt's error stays in the timeline after `last_error`
# has moved on.
_STEPS_HISTORY = """
steps AS (
    SELECT s.from_status, s.to_status, s.reason, s.ord
    FROM unnest(%(step_from)s::job_status[], %(step_to)s::job_status[], %(step_reason)s::text[])
         WITH ORDINALITY AS s(from_status, to_status, reason, ord)
),
history AS (
    INSERT INTO job_history (job_id, from_status, to_status, actor, reason, attempt, details)
    SELECT moved.id, CASE WHEN steps.ord = 1 THEN moved.from_status ELSE steps.from_status END,
           steps.to_status, %(actor)s, steps.reason, moved.attempt,
           CASE WHEN steps.to_status = 'failed' AND %(error)s::jsonb IS NOT NULL
                THEN %(details)s::jsonb || jsonb_build_object('error', jsonb_build_object(
                    'code', %(error)s::jsonb->>'code', 'class', %(error)s::jsonb->>'class',
                    'message', %(error)s::jsonb->>'message'))
                ELSE %(details)s::jsonb END
    FROM moved JOIN steps
      ON steps.ord <= (SELECT max(reached.ord) FROM steps AS reached
                       WHERE reached.to_status = moved.status)
    ORDER BY moved.id, steps.ord
    RETURNING id, job_id, from_status, to_status, actor, reason, attempt, details, at
)"""

# The outbox row of every history row written above, in the same statement. A start and an
# attempt's end also carry the queue and how long the job waited (due → started) or ran
# (started → ended), which /metrics folds into its histograms (store.metrics_repository):
# the timing is exact without reading any other row, and the streams' models drop these keys.
_EVENTS = """,
events AS (
    INSERT INTO job_events (job_id, history_id, tenant_id, type, version, data, occurred_at)
    SELECT history.job_id, history.id, moved.tenant_id, 'job.transition', 1,
           jsonb_build_object(
               'job_id', history.job_id, 'history_id', history.id,
               'from_status', history.from_status, 'to_status', history.to_status,
               'attempt', history.attempt, 'actor', history.actor, 'reason', history.reason,
               'details', history.details)
           || CASE
               WHEN history.to_status = 'running' THEN jsonb_build_object(
                   'queue', moved.queue, 'waited_seconds',
                   extract(epoch FROM history.at - greatest(moved.scheduled_at, moved.not_before)))
               WHEN history.from_status = 'running'
                    AND history.to_status IN ('completed', 'failed', 'cancelled')
               THEN jsonb_build_object(
                   'queue', moved.queue, 'ran_seconds',
                   extract(epoch FROM history.at - moved.started_at))
               ELSE jsonb_build_object() END,
           history.at
    FROM history JOIN moved ON moved.id = history.job_id
    ORDER BY history.id
    RETURNING id
)"""
_WRITE_STEPS = _STEPS_HISTORY + _EVENTS
EVENTS_OF_HISTORY = _EVENTS
"""The outbox rows of a statement's ``history`` rows, for statements built elsewhere
(``store.limits_queries``)."""

# A job's birth is one history row, from nothing to the state it is born in: `scheduled` when
# nothing holds it, `pending` when something does (a start time, its parents in a run). It
# never rested in `pending` on the way to `scheduled`, so no row says it did.
_WRITE_BIRTH = (
    """
history AS (
    INSERT INTO job_history (job_id, from_status, to_status, actor, reason, attempt, details)
    SELECT moved.id, NULL, moved.status, %(actor)s, %(reason)s, 0, '{}'::jsonb
    FROM moved
    ORDER BY moved.id
    RETURNING id, job_id, from_status, to_status, actor, reason, attempt, details, at
)"""
    + _EVENTS
)


TRANSITION_TEMPLATE = (
    """
-- name: transition (one job) / transition_many (several, e.g. a worker claiming a chunk)
-- Compare-and-set along a path of allowed steps. The row lock in `locked` makes the reported
-- `from_status` the one the UPDATE saw; a job missing from `moved` lost (for one job, the final
-- SELECT says why). Several jobs are locked in id order, so two callers never deadlock. The
-- UPDATE's conditions are on `locked`, the row as this statement locked it (nothing else can
-- change it before the UPDATE), and it joins on the id alone: given a condition on `j.status`,
-- a plan made with stale statistics (a queue analysed while empty, then refilled) scans the
-- partial index of that state, reading every job waiting in it to find the one it moves.
WITH {locked},
moved AS (
    UPDATE jobs AS j
    SET status = %(to_status)s::job_status,
        updated_at = now(){effects}
    FROM locked
    WHERE j.id = locked.id
      AND locked.status = ANY(%(allowed_from)s::job_status[]){fence}
    RETURNING j.*, locked.status AS from_status
),"""
    + _WRITE_STEPS
    + """{dead_letter}
{final}
"""
)

_TIMELINE_ENTRY = """jsonb_build_object(
                    'history_id', {h}.id, 'at', {h}.at, 'from_status', {h}.from_status,
                    'to_status', {h}.to_status, 'attempt', {h}.attempt, 'actor', {h}.actor,
                    'reason', {h}.reason, 'details', {h}.details)"""

DEAD_LETTER = f""",
-- A job that ends `failed` is dead-lettered by the statement that failed it: the error, the
-- attempts, a payload snapshot and its whole timeline (the rows written above are not yet
-- visible in `job_history`, hence the union). A replayed job that fails for good again
-- reopens its entry, so every replay of one job stays on one entry.
dead_letter AS (
    INSERT INTO dead_letters AS d (job_id, tenant_id, project_id, type, queue, reason,
                                   error_code, error_class, error_message, traceback,
                                   attempts, payload, timeline, first_failed_at)
    SELECT moved.id, moved.tenant_id, moved.project_id, moved.type, moved.queue,
           %(dead_letter_reason)s, moved.last_error->>'code', moved.last_error->>'class',
           moved.last_error->>'message', moved.last_error->>'traceback', moved.attempt,
           moved.payload,
           (SELECT coalesce(jsonb_agg(t.entry ORDER BY t.id), '[]'::jsonb) FROM (
                SELECT h.id, {_TIMELINE_ENTRY.format(h="h")} AS entry
                FROM job_history AS h WHERE h.job_id = moved.id
                UNION ALL
                SELECT history.id, {_TIMELINE_ENTRY.format(h="history")}
                FROM history WHERE history.job_id = moved.id) AS t),
           -- The first failed attempt's time: earlier attempts failed and were retried, each
           -- leaving a `failed` row (ix_job_history_job_id_id); now() when this is the first.
           coalesce((SELECT min(h.at) FROM job_history AS h
                     WHERE h.job_id = moved.id AND h.to_status = 'failed'), now())
    FROM moved
    WHERE moved.status = 'failed'
    ON CONFLICT (job_id) DO UPDATE
    SET reason = EXCLUDED.reason, error_code = EXCLUDED.error_code,
        error_class = EXCLUDED.error_class, error_message = EXCLUDED.error_message,
        traceback = EXCLUDED.traceback, attempts = EXCLUDED.attempts,
        payload = EXCLUDED.payload, timeline = EXCLUDED.timeline, last_failed_at = now(),
        status = 'open', status_changed_at = now()
    RETURNING id
)"""

DEAD_LETTER_REPLAYED = """,
-- A failed job moved back to `scheduled` (a replay) closes its dead letter in the same
-- statement, so an open dead letter always means a job resting in `failed`.
replayed AS (
    UPDATE dead_letters AS d
    SET status = 'replayed', status_changed_at = now(), replay_count = d.replay_count + 1
    FROM moved
    WHERE d.job_id = moved.id AND moved.from_status = 'failed' AND d.status = 'open'
    RETURNING d.id
)"""

_LOCKED_COLUMNS = "id, status, lease_token, lease_expires_at, not_before"
"""What a transition reads of the row it locks: its conditions are on these (see above)."""
LOCKED_ONE = f"""locked AS (
    SELECT {_LOCKED_COLUMNS}
    FROM jobs
    WHERE id = %(job_id)s
    FOR UPDATE
)"""
_LOCK_EACH = f"""CROSS JOIN LATERAL (
        SELECT {_LOCKED_COLUMNS} FROM jobs
        WHERE jobs.id = {{source}}.id
        FOR UPDATE
    ) AS found"""
LOCKED_MANY = f"""locked AS (
    -- One primary-key lookup per id, in id order (the caller sorts them), so no plan can
    -- turn a chunk's claim into a scan of every job.
    SELECT found.*
    FROM unnest(%(job_ids)s::bigint[]) AS wanted(id)
    {_LOCK_EACH.format(source="wanted")}
)"""
LOCKED_HELD = f"""held AS (
    SELECT * FROM unnest(%(job_ids)s::bigint[], %(held_tokens)s::bigint[],
                         %(held_results)s::jsonb[]) AS h(id, token, result)
),
-- Many jobs, each held by this worker under its own fencing token and finishing with its own
-- result: the batched outcomes of a worker process (``jobengine.completer``).
locked AS (
    SELECT found.*, held.token AS held_token, held.result AS held_result
    FROM held
    {_LOCK_EACH.format(source="held")}
)"""
FENCE_HELD_TOKEN = "\n      AND locked.lease_token = locked.held_token"
HELD_RESULT = "locked.held_result"
FINAL_ONE = """SELECT locked.status AS current_status, locked.lease_token AS current_token,
       locked.lease_expires_at AS current_lease_expires_at,
       moved.*
FROM locked LEFT JOIN moved ON true"""
FINAL_MANY = "SELECT moved.* FROM moved ORDER BY id"
FINAL_SETTLED = """SELECT moved.id, moved.status, moved.from_status, moved.run_id, moved.run_key,
       moved.tenant_id, moved.type, moved.queue, moved.priority, moved.attempt,
       moved.time_limit_seconds
FROM moved ORDER BY id"""
"""What a run's settling moves return (``guard._settle``): enough to settle the next
generation and to publish a released child (``guard.Released``). A fan-out's release moves
thousands of rows, and returning whole rows (payloads and all) cost a fifth of the move."""

CREATE_JOB = (
    """
-- name: create_job
-- Insert a job born `scheduled`, or `pending` when it has a start time. An Idempotency-Key
-- already used by the tenant inserts nothing. `dispatching` says the caller publishes right
-- after commit, so the job is marked as handed to the broker now rather than by a second
-- UPDATE later; a failed publish clears the mark.
WITH moved AS (
    INSERT INTO jobs (tenant_id, project_id, type, queue, priority, payload, status,
                      retry_policy, not_before, idempotency_key, request_hash, scheduled_at,
                      dispatched_at, time_limit_seconds, scheduled_for)
    VALUES (%(tenant_id)s, %(project_id)s, %(type)s, %(queue)s, %(priority)s,
            %(payload)s::jsonb, %(to_status)s::job_status, %(retry_policy)s::jsonb,
            %(not_before)s, %(idempotency_key)s, %(request_hash)s,
            CASE WHEN %(to_status)s = 'scheduled' THEN now() END,
            CASE WHEN %(to_status)s = 'scheduled' AND %(dispatching)s THEN now() END,
            %(time_limit_seconds)s, %(scheduled_for)s)
    ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING *
),"""
    + _WRITE_BIRTH
    + """
SELECT * FROM moved
"""
)

BORN_COLUMNS = "id, status, created_at, updated_at, scheduled_at, dispatched_at"
"""What a batch's insert returns: the rest of each job is what the producer sent
(``store.rows.born_job``), and decoding it back would cost more than storing it."""

_CREATE_JOBS = """
-- name: create_jobs{explained}
-- Many jobs without idempotency keys in one statement (batch submission), each born
-- `scheduled` or, with a start time, `pending`, with its history and outbox rows. The jobs
-- come as one JSON array: one parameter to encode and parse, where arrays of each column cost
-- the client more than the statement costs Postgres.
WITH input AS (
    SELECT *
    FROM ROWS FROM (jsonb_to_recordset(%(jobs)s::jsonb)
                    AS (tenant_id text, project_id text, type text, queue text,
                        priority smallint, payload jsonb, status job_status,
                        retry_policy jsonb, not_before timestamptz,
                        time_limit_seconds double precision,
                        scheduled_for timestamptz{birth_columns}))
         WITH ORDINALITY AS i(tenant_id, project_id, type, queue, priority, payload, status,
                              retry_policy, not_before, time_limit_seconds, scheduled_for
                              {birth_names}, ord)
),
moved AS (
    INSERT INTO jobs (tenant_id, project_id, type, queue, priority, payload, status,
                      retry_policy, not_before, scheduled_at, dispatched_at, time_limit_seconds,
                      scheduled_for)
    SELECT tenant_id, project_id, type, queue, priority, payload, status, retry_policy,
           not_before, CASE WHEN status = 'scheduled' THEN now() END,
           CASE WHEN status = 'scheduled' AND %(dispatching)s THEN now() END, time_limit_seconds,
           scheduled_for
    FROM input{where}
    ORDER BY ord
    RETURNING *
),"""

CREATE_JOBS = (
    _CREATE_JOBS.format(explained="", birth_columns="", birth_names="", where="")
    + _WRITE_BIRTH
    + f"""
SELECT {BORN_COLUMNS} FROM moved ORDER BY id
"""
)

# ---- rate limits (jobengine.limits): a batch whose births say why each one waits ---------

_WRITE_BIRTH_EXPLAINED = (
    """
-- Each job's own birth reason and details (a rate-limited job names its limit, key and
-- slot), found by its ordinal: ids are given in the order of the insert's ORDER BY ord.
history AS (
    INSERT INTO job_history (job_id, from_status, to_status, actor, reason, attempt, details)
    SELECT born.id, NULL, born.status, %(actor)s, coalesce(input.reason, %(reason)s), 0,
           coalesce(input.details, '{}'::jsonb)
    FROM (SELECT id, status, row_number() OVER (ORDER BY id) AS ord FROM moved) AS born
    JOIN input USING (ord)
    ORDER BY born.id
    RETURNING id, job_id, from_status, to_status, actor, reason, attempt, details, at
)"""
    + _EVENTS
)

CREATE_JOBS_EXPLAINED = (
    _CREATE_JOBS.format(
        explained=" (explained: births with their own reasons)",
        birth_columns=", reason text, details jsonb",
        birth_names=", reason, details",
        where="",
    )
    + _WRITE_BIRTH_EXPLAINED
    + f"""
SELECT {BORN_COLUMNS} FROM moved ORDER BY id
"""
)

LEASE_HOLDS = """
    WHERE now() BETWEEN %(lease_start)s::timestamptz AND %(lease_until)s::timestamptz
      AND NOT EXISTS (
          SELECT 1 FROM unnest(string_to_array(%(lease_xids)s, ',')::xid8[]) AS lease(xid)
          WHERE lease.xid IS DISTINCT FROM pg_current_xact_id_if_assigned()
            AND pg_xact_status(lease.xid) IS DISTINCT FROM 'committed')
      AND NOT EXISTS (
          SELECT 1 FROM unnest(string_to_array(%(lease_limits)s, ',')) AS leased(name)
          WHERE NOT EXISTS (SELECT 1 FROM rate_limits AS l
                            WHERE l.name = leased.name
                              AND l.updated_at < %(lease_since)s::timestamptz))"""
"""Jobs admitted from a process's token leases (``jobengine.limits.leases``) are written only
while every lease holds: its transaction committed (or is this one), this transaction's
``now()`` lies in the lease's window, and its limits are as they were when it was taken (not
deleted, set again or changed since: pk_rate_limits). Otherwise nothing is written and the
caller books."""

CREATE_JOBS_LEASED = (
    _CREATE_JOBS.format(
        explained=" (leased: admitted from token leases)",
        birth_columns="",
        birth_names="",
        where=LEASE_HOLDS,
    )
    + _WRITE_BIRTH
    + f"""
SELECT {BORN_COLUMNS} FROM moved ORDER BY id
"""
)

GET_JOB = f"""
-- name: get_job  (primary key)
SELECT {JOB_COLUMNS} FROM jobs WHERE id = %(job_id)s
"""

GET_JOB_BY_IDEMPOTENCY_KEY = f"""
-- name: get_job_by_idempotency_key  (uq_jobs_tenant_idempotency_key)
SELECT {JOB_COLUMNS}, request_hash FROM jobs
WHERE tenant_id = %(tenant_id)s AND idempotency_key = %(idempotency_key)s
"""

JOB_HISTORY = """
-- name: job_history  (ix_job_history_job_id_id)
SELECT id, job_id, from_status, to_status, at, actor, reason, attempt, details
FROM job_history WHERE job_id = %(job_id)s ORDER BY id
"""

JOB_EVENTS = """
-- name: job_events  (ix_job_events_job_id_id)
SELECT id, job_id, history_id, tenant_id, type, version, data, occurred_at
FROM job_events WHERE job_id = %(job_id)s AND id > %(after_id)s ORDER BY id
"""

# ---- leases -------------------------------------------------------------------------------

EXTEND_LEASES = """
-- name: extend_leases  (primary key)
-- One heartbeat for every job a worker process holds; a job missing from the result has lost
-- its lease (taken over, cancelled or finished elsewhere) and its handler should stop.
UPDATE jobs AS j
SET lease_expires_at = now() + make_interval(secs => %(lease_ttl)s)
FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[]) AS held(id, token)
WHERE j.id = held.id AND j.lease_token = held.token AND j.status IN ('claimed', 'running')
RETURNING j.id
"""

RECORD_PROGRESS = """
-- name: record_progress  (primary key; fenced like every write by a lease holder)
-- Progress is stored on the job and emitted to the outbox as a `job.progress` event.
WITH moved AS (
    UPDATE jobs SET progress = %(progress)s::jsonb, updated_at = now()
    WHERE id = %(job_id)s AND lease_token = %(lease_token)s AND status = 'running'
    RETURNING id, tenant_id, attempt
),
events AS (
    INSERT INTO job_events (job_id, history_id, tenant_id, type, version, data)
    SELECT id, NULL, tenant_id, 'job.progress', 1,
           jsonb_build_object('job_id', id, 'attempt', attempt, 'progress', %(progress)s::jsonb)
    FROM moved
    RETURNING id
)
SELECT id FROM moved
"""

# ---- dispatch -----------------------------------------------------------------------------

UNDISPATCHED_JOBS = """
-- name: undispatched_jobs  (ix_jobs_scheduled_dispatched_at)
-- Scheduled, due, and never published: a retry deferred past the broker's ETA limit, a job
-- enqueued in a producer's own transaction, or one whose publish after commit failed.
SELECT id, type, queue, priority, attempt, time_limit_seconds
FROM jobs
WHERE status = 'scheduled' AND dispatched_at IS NULL
  AND (not_before IS NULL OR not_before <= now())
  AND scheduled_at <= now() - make_interval(secs => %(grace)s)
  AND queue NOT IN (SELECT queue FROM queue_limits)
  -- Published by their own sweeps instead (``jobengine.quotas``): fair-shared queues by the
  -- fair fill, capped tenants by their admissions.
  AND queue NOT IN (SELECT queue FROM fair_queues)
  AND tenant_id NOT IN (SELECT tenant_id FROM tenant_quotas WHERE max_running IS NOT NULL)
ORDER BY id
LIMIT %(limit)s
"""

LOST_DISPATCHES = """
-- name: lost_dispatches  (ix_jobs_scheduled_dispatched_at)
-- Published long ago, due long ago, still not claimed: the message seems lost (e.g. Redis
-- restarted). A retry's ETA message counts from its not_before, not from its publish.
SELECT id, type, queue, priority, attempt, time_limit_seconds
FROM jobs
WHERE status = 'scheduled' AND dispatched_at < now() - make_interval(secs => %(after)s)
  AND (not_before IS NULL OR not_before <= now())
  AND greatest(dispatched_at, not_before) < now() - make_interval(secs => %(after)s)
ORDER BY dispatched_at, id
LIMIT %(limit)s
"""

_SCHEDULED_BY_ID = """
    SELECT found.id
    FROM unnest(%(ids)s::bigint[]) AS wanted(id)
    CROSS JOIN LATERAL (
        SELECT id FROM jobs WHERE jobs.id = wanted.id AND jobs.status = 'scheduled' OFFSET 0
    ) AS found"""
"""One primary-key probe per id: given `status = 'scheduled'` beside `id = ANY(...)`, a plan made
while few jobs were scheduled (a fan-out's children still pending, a queue analysed empty)
reads the whole partial index of scheduled jobs instead."""

MARK_DISPATCHED = f"""
-- name: mark_dispatched  (primary key)
UPDATE jobs AS j SET dispatched_at = now()
FROM ({_SCHEDULED_BY_ID}) AS m
WHERE j.id = m.id
"""

CLEAR_DISPATCHED = f"""
-- name: clear_dispatched  (primary key)
-- A publish after commit failed: hand these jobs to the leader, which publishes them.
UPDATE jobs AS j SET dispatched_at = NULL
FROM ({_SCHEDULED_BY_ID}) AS m
WHERE j.id = m.id
"""

# ---- queue concurrency limits ------------------------------------------------------------

LOCK_QUEUE_LIMIT = """
-- name: lock_queue_limit  (pk_queue_limits)
-- Claims in a limited queue take turns on its limit row, so the count that follows (a new
-- statement, hence a new snapshot) sees every claim committed before this one.
SELECT max_running FROM queue_limits WHERE queue = %(queue)s FOR UPDATE
"""

LEASED_IN_QUEUE = """
-- name: leased_in_queue  (ix_jobs_queue_leased)
SELECT count(*) AS leased FROM jobs
WHERE queue = %(queue)s AND status IN ('claimed', 'running')
"""

ADMISSIONS = """
-- name: admissions  (pk_queue_limits, ix_jobs_queue_leased, ix_jobs_scheduled_dispatched_at)
-- For each limited queue, due scheduled jobs without a message, as many as its free slots
-- (limit - claimed/running - already published and not yet claimed), oldest first.
SELECT j.id, j.type, j.queue, j.priority, j.attempt, j.time_limit_seconds
FROM queue_limits AS l
CROSS JOIN LATERAL (
    SELECT l.max_running
           - (SELECT count(*) FROM jobs WHERE queue = l.queue
                AND status IN ('claimed', 'running'))
           - (SELECT count(*) FROM jobs WHERE queue = l.queue AND status = 'scheduled'
                AND dispatched_at IS NOT NULL) AS free
) AS slots
CROSS JOIN LATERAL (
    SELECT id, type, queue, priority, attempt, time_limit_seconds FROM jobs
    WHERE queue = l.queue AND status = 'scheduled' AND dispatched_at IS NULL
      AND (not_before IS NULL OR not_before <= now())
    ORDER BY priority DESC, id
    LIMIT greatest(slots.free, 0)
) AS j
WHERE l.queue NOT IN (SELECT queue FROM fair_queues)  -- the fair fill publishes those
ORDER BY j.priority DESC, j.id
"""

LIMITED_QUEUES = """
-- name: limited_queues  (pk_queue_limits)
SELECT queue, max_running FROM queue_limits ORDER BY queue
"""

SET_QUEUE_LIMIT = """
-- name: set_queue_limit
INSERT INTO queue_limits (queue, max_running) VALUES (%(queue)s, %(max_running)s)
ON CONFLICT (queue) DO UPDATE SET max_running = EXCLUDED.max_running, updated_at = now()
"""

CLEAR_QUEUE_LIMIT = """
-- name: clear_queue_limit
DELETE FROM queue_limits WHERE queue = %(queue)s
"""

STUCK_JOBS = """
-- name: stuck_jobs  (operators' view; ix_jobs_lease_expiry, ix_jobs_scheduled_dispatched_at)
-- Claimed or running with a missed heartbeat, or scheduled and due with no message taken.
SELECT id, type, queue, status, attempt, lease_owner,
       CASE WHEN status IN ('claimed', 'running') THEN 'missed heartbeat'
            ELSE 'scheduled, no message taken' END AS why,
       extract(epoch FROM now() - CASE
           WHEN status IN ('claimed', 'running') THEN lease_expires_at
           ELSE greatest(coalesce(dispatched_at, scheduled_at), not_before) END) AS stuck_seconds
FROM jobs
WHERE (status IN ('claimed', 'running') AND lease_expires_at < now())
   OR (status = 'scheduled'
       AND greatest(coalesce(dispatched_at, scheduled_at), not_before)
           < now() - make_interval(secs => %(scheduled_after)s))
ORDER BY id
LIMIT %(limit)s
"""


def transition_sql(
    effects: dict[str, str],
    *,
    fenced: bool,
    lease_expired: bool,
    due: bool,
    many: bool = False,
    held: bool = False,
    dead_letter: bool = False,
    replay: bool = False,
    extra_fence: str = "",
    extra_ctes: str = "",
    settled: bool = False,
) -> str:
    """Fill the transition template for one path; the guard caches the result. ``held``:
    many jobs, each fenced by its own token and given its own result (``LOCKED_HELD``).
    ``extra_fence`` and ``extra_ctes``: a condition more on the moved rows, and statements
    more over ``moved`` (``store.run_queries``: a run's leaves counted as they finish).
    ``settled``: many jobs moved by a run's settling, returned as ``FINAL_SETTLED``."""
    if held and "result" in effects:
        effects = {**effects, "result": HELD_RESULT}
    set_clause = "".join(f",\n        {column} = {value}" for column, value in effects.items())
    fence = (
        (FENCE_HELD_TOKEN if held else FENCE_TOKEN if fenced else "")
        + (FENCE_LEASE_EXPIRED if lease_expired else "")
        + (FENCE_DUE if due else "")
        + extra_fence
    )
    return TRANSITION_TEMPLATE.format(
        effects=set_clause,
        fence=fence,
        locked=LOCKED_HELD if held else LOCKED_MANY if many else LOCKED_ONE,
        final=FINAL_SETTLED if settled else FINAL_MANY if many or held else FINAL_ONE,
        dead_letter=(DEAD_LETTER if dead_letter else "")
        + (DEAD_LETTER_REPLAYED if replay else "")
        + extra_ctes,
    )


# ---- dead letters -------------------------------------------------------------------------

DEAD_LETTER_COLUMNS = (
    "d.id, d.job_id, d.tenant_id, d.project_id, d.type, d.queue, d.reason, d.error_code, "
    "d.error_class, d.error_message, d.traceback, d.attempts, d.payload, d.timeline, "
    "d.first_failed_at, d.last_failed_at, d.status, d.status_changed_at, d.status_changed_by, "
    "d.status_reason, d.replay_count"
)

GET_DEAD_LETTER = f"""
-- name: get_dead_letter  (pk_dead_letters; uq_dead_letters_job_id by job)
-- The job's last error's details (a command's exit code and output tails): the history keeps
-- only each failure's code, class and message.
SELECT {DEAD_LETTER_COLUMNS}, j.status AS job_status, j.last_error->'details' AS error_details
FROM dead_letters AS d JOIN jobs AS j ON j.id = d.job_id
WHERE d.id = %(id)s
"""

LOCK_DEAD_LETTER = f"""
-- name: lock_dead_letter  (pk_dead_letters)
-- Replays and discards of one entry take turns on its row: of two concurrent replays, the
-- second sees the first's `replayed` and does nothing.
SELECT {DEAD_LETTER_COLUMNS}, NULL AS job_status, NULL AS error_details
FROM dead_letters AS d WHERE d.id = %(id)s
FOR UPDATE
"""

DEAD_LETTER_OF_JOB = """
-- name: dead_letter_of_job  (uq_dead_letters_job_id)
SELECT id FROM dead_letters WHERE job_id = %(job_id)s
"""

PREPARE_REPLAY = """
-- name: prepare_replay  (primary key)
-- Columns beside `status` that a replay sets before its transition: the retry budget it
-- grants and, when patched, the payload. Only a job resting in `failed` is touched.
UPDATE jobs
SET budget_start_attempt = %(budget_start_attempt)s,
    payload = coalesce(%(payload)s::jsonb, payload),
    updated_at = now()
WHERE id = %(job_id)s AND status = 'failed'
RETURNING id
"""

RECORD_REPLAY = """
-- name: record_replay
INSERT INTO dead_letter_replays (dead_letter_id, job_id, history_id, actor, reason, attempt,
                                 payload_patch, fresh_budget)
SELECT %(dead_letter_id)s, %(job_id)s, max(h.id), %(actor)s, %(reason)s, %(attempt)s,
       %(payload_patch)s::jsonb, %(fresh_budget)s
FROM job_history AS h WHERE h.job_id = %(job_id)s
RETURNING id
"""

DEAD_LETTER_REPLAYS = """
-- name: dead_letter_replays  (ix_dead_letter_replays_dead_letter_id_id, ix_job_history_job_id_id)
-- Each replay with its outcome: the first state the job came to rest in after it. A `failed`
-- row followed by `failed → scheduled` in the same statement (same `at`) was a retry, not a
-- rest.
SELECT r.id, r.dead_letter_id, r.job_id, r.history_id, r.actor, r.reason, r.attempt,
       r.payload_patch, r.fresh_budget, r.at,
       (SELECT h.to_status FROM job_history AS h
        WHERE h.job_id = r.job_id AND h.id > r.history_id
          AND h.to_status IN ('completed', 'failed', 'cancelled')
          AND NOT EXISTS (
              SELECT 1 FROM job_history AS n
              WHERE n.job_id = h.job_id AND n.id > h.id AND n.at = h.at
                AND n.from_status = 'failed' AND n.to_status = 'scheduled')
        ORDER BY h.id LIMIT 1) AS outcome
FROM dead_letter_replays AS r
WHERE r.dead_letter_id = %(id)s
ORDER BY r.id
"""

DISCARD_DEAD_LETTER = """
-- name: discard_dead_letter  (pk_dead_letters)
UPDATE dead_letters
SET status = 'discarded', status_changed_at = now(), status_changed_by = %(actor)s,
    status_reason = %(reason)s
WHERE id = %(id)s AND status = 'open'
RETURNING id
"""

PURGE_DEAD_LETTERS = """
-- name: purge_dead_letters  (ix_dead_letters_status_changed_at)
-- Entries already dealt with (replayed or discarded) and older than the cut-off; open ones
-- are never purged. The jobs themselves and their history stay.
DELETE FROM dead_letters
WHERE status IN ('replayed', 'discarded') AND status_changed_at < %(before)s
RETURNING id
"""

DEAD_LETTER_COUNTS = """
-- name: dead_letter_counts  (ix_dead_letters_status_id)
SELECT reason, type, count(*) AS n FROM dead_letters
WHERE status = 'open'
GROUP BY reason, type
ORDER BY reason, type
"""

# ---- event streams (commit-ordered outbox cursor, see migration 0006) -----------------------

_OUTBOX_COLUMNS = (
    "id, txid::text::bigint AS txid, job_id, tenant_id, type, version, data, occurred_at"
)
_OUTBOX_VISIBLE = """(txid, id) > (%(after_txid)s::text::xid8, %(after_id)s)
  AND txid < pg_snapshot_xmin(pg_current_snapshot())"""

OUTBOX_ALL = f"""
-- name: outbox_all  (ix_job_events_txid_id)
-- Every tenant's events after a position, only from transactions older than the snapshot's
-- xmin (all of them have ended), so no later commit can land behind the position returned.
SELECT {_OUTBOX_COLUMNS} FROM job_events
WHERE {_OUTBOX_VISIBLE}
ORDER BY txid, id
LIMIT %(limit)s
"""

OUTBOX_TENANT = f"""
-- name: outbox_tenant  (ix_job_events_tenant_id_txid_id)
SELECT {_OUTBOX_COLUMNS} FROM job_events
WHERE tenant_id = %(tenant_id)s AND {_OUTBOX_VISIBLE}
ORDER BY txid, id
LIMIT %(limit)s
"""

OUTBOX_JOB = f"""
-- name: outbox_job  (ix_job_events_job_id_id; one job's events are few, sorted in memory)
SELECT {_OUTBOX_COLUMNS} FROM job_events
WHERE job_id = %(job_id)s AND {_OUTBOX_VISIBLE}
ORDER BY txid, id
LIMIT %(limit)s
"""

OUTBOX_JOB_SETTLED = """
-- name: outbox_job_settled  (primary key, ix_job_events_job_id_id)
-- Whether a job's stream has nothing more to say: the job is in a final state and no event of
-- it lies after the position, whether or not that event is visible to streams yet.
SELECT j.status IN ('completed', 'failed', 'cancelled') AND NOT EXISTS (
           SELECT 1 FROM job_events AS e
           WHERE e.job_id = j.id AND (e.txid, e.id) > (%(after_txid)s::text::xid8, %(after_id)s)
       ) AS settled
FROM jobs AS j WHERE j.id = %(job_id)s
"""

OUTBOX_HEAD = """
-- name: outbox_head
-- The position of "now": every transaction below the snapshot's xmin has ended, so a stream
-- starting here gets every event committed from now on and none from before.
SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS txid
"""

# ---- API keys -------------------------------------------------------------------------------

API_KEY_AUTHENTICATE = """
-- name: api_key_authenticate  (uq_api_keys_secret_hash)
-- Look a key up by the hash of the whole key and note its use, at most once a minute so a
-- busy client does not turn every read into a write.
WITH found AS (
    SELECT id, tenant_id, name, prefix, scopes, last_used_at FROM api_keys
    WHERE secret_hash = %(secret_hash)s AND revoked_at IS NULL
),
touched AS (
    UPDATE api_keys AS k SET last_used_at = now()
    FROM found
    WHERE k.id = found.id
      AND (found.last_used_at IS NULL OR found.last_used_at < now() - interval '60 seconds')
    RETURNING k.id
)
SELECT id, tenant_id, name, prefix, scopes FROM found
"""

API_KEY_CREATE = """
-- name: api_key_create
INSERT INTO api_keys (tenant_id, name, prefix, secret_hash, scopes)
VALUES (%(tenant_id)s, %(name)s, %(prefix)s, %(secret_hash)s, %(scopes)s::text[])
RETURNING id, tenant_id, name, prefix, scopes, created_at, revoked_at, last_used_at
"""

API_KEY_LIST = """
-- name: api_key_list
SELECT id, tenant_id, name, prefix, scopes, created_at, revoked_at, last_used_at
FROM api_keys ORDER BY id
"""

API_KEY_REVOKE = """
-- name: api_key_revoke  (uq_api_keys_prefix)
UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE prefix = %(prefix)s
RETURNING id, tenant_id, name, prefix, scopes, created_at, revoked_at, last_used_at
"""

# ---- metrics (read at scrape time; the rest of what /metrics reads is in metrics_repository) --

QUEUE_DEPTH = """
-- name: queue_depth  (ix_jobs_runnable: scheduled jobs only)
-- A queue's backlog and its lag: how long its oldest waiting job has waited, from when it
-- became due (scheduled_at, or not_before when that came later). /metrics and the console.
SELECT queue, count(*) AS waiting,
       coalesce(extract(epoch FROM now() - min(greatest(scheduled_at, not_before))), 0)::float8
           AS oldest_waiting_seconds
FROM jobs
WHERE status = 'scheduled'
GROUP BY queue
ORDER BY queue
"""

QUEUES_OF_JOBS = """
-- name: queues_of_jobs  (primary key)
-- The Postgres queue of the jobs a message names, read by a claim only while some queue has a
-- concurrency limit: the broker queue a message came by no longer says which it is.
SELECT DISTINCT queue FROM jobs WHERE id = ANY(%(ids)s::bigint[])
"""
