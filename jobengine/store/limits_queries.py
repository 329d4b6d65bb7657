"""The rate limits' statements, each named and served by an index (see ``jobengine.limits``).

``create_job_limited`` stores one job a limit applies to, its slots taken in the same
statement; ``book_buckets`` books a batch's, once for the whole batch, before its insert.
The rest run when an operator changes a limit, when a process refreshes its copy of the limits, or
when ``/metrics`` is scraped.
"""

from __future__ import annotations

from jobengine.store.queries import EVENTS_OF_HISTORY, LEASE_HOLDS

_SECONDS_PER_TOKEN = (
    "(CASE l.per WHEN 'second' THEN 1.0 WHEN 'minute' THEN 60.0 ELSE 3600.0 END / l.rate)"
)

_BOOK = f"""wanted AS (
    SELECT w.limit_name, w.key, w.units * {_SECONDS_PER_TOKEN} AS cost,
           l.burst * {_SECONDS_PER_TOKEN} AS capacity, {_SECONDS_PER_TOKEN} AS per_token
    FROM jsonb_to_recordset(%(wanted)s::jsonb) AS w(limit_name text, key text, units int)
    JOIN rate_limits AS l ON l.name = w.limit_name{{only_if}}
),
advanced AS (
    INSERT INTO rate_limit_buckets AS b (limit_name, key, tat)
    SELECT limit_name, key, now() + make_interval(secs => cost)
    FROM wanted
    ORDER BY limit_name, key
    ON CONFLICT (limit_name, key) DO UPDATE
    SET tat = greatest(b.tat, now()) + (EXCLUDED.tat - now())
    RETURNING b.limit_name, b.key, b.tat
)"""
"""GCRA: each bucket keeps a theoretical arrival time (TAT), when it is full again. Each
wanted row books ``units`` tokens of one bucket: its TAT moves from ``max(TAT, now)`` by
their refill time, and the last of them may go when that TAT lies no more than the bucket's
capacity ahead: now, or later. Buckets are upserted in (limit, key) order, so two
submissions never deadlock; the row lock is held to the submission's commit, so no two
transactions book the same tokens. Rates come from the table, not the caller's cache: a limit
deleted since is simply not taken."""

_ONE_JOB_SLOTS = (
    _BOOK
    + """,
slots AS (
    SELECT limit_name, key,
           greatest(now(), advanced.tat - make_interval(secs => wanted.capacity)) AS slot
    FROM advanced JOIN wanted USING (limit_name, key)
)"""
)
"""One job's slot in each of its buckets (see ``_BOOK``)."""

BOOK_BUCKETS = f"""
-- name: book_buckets  (pk_rate_limits, pk_rate_limit_buckets)
-- A batch's tokens, one row per bucket with all the batch's units on it, whatever the
-- batch's size (see _BOOK). Each bucket answers with its TAT before the batch, its capacity
-- and a token's refill time, from which the caller places each job in batch order.
WITH {_BOOK.format(only_if="")}
SELECT advanced.limit_name, advanced.key, wanted.capacity, wanted.per_token, now() AS now,
       advanced.tat - make_interval(secs => wanted.cost) AS booked_from
FROM advanced JOIN wanted USING (limit_name, key)
"""

_NOT_STORED = """
    WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE tenant_id = %(tenant_id)s
                      AND idempotency_key = %(idempotency_key)s)"""


def _create_job_limited(name: str, only_if: str) -> str:
    return (
        f"""
-- name: {name}  (pk_rate_limits, pk_rate_limit_buckets)
-- create_job for a job that rate limits apply to, in the same one statement: its slots are
-- taken (see _ONE_JOB_SLOTS), the latest holds it, and it is born `pending` at that slot with a
-- birth row naming the limit and key, or `scheduled` when the slot is now.
WITH {_ONE_JOB_SLOTS.format(only_if=only_if)},
held AS (
    SELECT limit_name, key, slot FROM slots WHERE slot > now() ORDER BY slot DESC LIMIT 1
),
birth AS (
    SELECT CASE WHEN held.slot IS NOT NULL OR %(not_before)s::timestamptz IS NOT NULL
                THEN 'pending' ELSE 'scheduled' END::job_status AS status,
           greatest(held.slot, %(not_before)s::timestamptz) AS not_before,
           coalesce('rate_limited: ' || held.limit_name || ' key ' || held.key, %(reason)s)
               AS reason,
           CASE WHEN held.slot IS NULL THEN '{{}}'::jsonb
                ELSE jsonb_build_object('rate_limit', held.limit_name, 'key', held.key,
                                        'slot', held.slot) END AS details
    FROM (SELECT) AS one LEFT JOIN held ON true
),
moved AS (
    INSERT INTO jobs (tenant_id, project_id, type, queue, priority, payload, status,
                      retry_policy, not_before, idempotency_key, request_hash, scheduled_at,
                      dispatched_at, time_limit_seconds, scheduled_for)
    SELECT %(tenant_id)s, %(project_id)s, %(type)s, %(queue)s, %(priority)s,
           %(payload)s::jsonb, birth.status, %(retry_policy)s::jsonb,
           birth.not_before, %(idempotency_key)s, %(request_hash)s,
           CASE WHEN birth.status = 'scheduled' THEN now() END,
           CASE WHEN birth.status = 'scheduled' AND %(dispatching)s THEN now() END,
           %(time_limit_seconds)s, %(scheduled_for)s::timestamptz
    FROM birth
    ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING *
),
history AS (
    INSERT INTO job_history (job_id, from_status, to_status, actor, reason, attempt, details)
    SELECT moved.id, NULL, moved.status, %(actor)s, birth.reason, 0, birth.details
    FROM moved CROSS JOIN birth
    RETURNING id, job_id, from_status, to_status, actor, reason, attempt, details, at
)"""
        + EVENTS_OF_HISTORY
        + """
SELECT * FROM moved
"""
    )


CREATE_JOB_LIMITED = _create_job_limited("create_job_limited", "")
CREATE_JOB_LIMITED_KEYED = _create_job_limited("create_job_limited_keyed", _NOT_STORED)
"""For a job with an Idempotency-Key: a retry of a request the tenant already made takes no
slot (uq_jobs_tenant_idempotency_key). Apart, so that a job without a key has no condition
on ``jobs`` that a plan made on an empty table could serve by scanning it."""

LEASE_BUCKETS = f"""
-- name: lease_buckets  (pk_rate_limits, pk_rate_limit_buckets)
-- A process's lease of `tokens` in each wanted bucket, spent over the next %(horizon)s
-- seconds without another write (see jobengine.limits.leases). The tokens are booked as
-- if all were spent at the end of that window (the TAT moves on from max(TAT, now +
-- horizon)), and only while the bucket stays at least half full for everyone else; a bucket
-- that cannot is not leased (no row comes back) and its jobs book one by one as before.
WITH wanted AS (
    SELECT w.limit_name, w.key, w.tokens * {_SECONDS_PER_TOKEN} AS cost,
           l.burst * {_SECONDS_PER_TOKEN} AS capacity
    FROM jsonb_to_recordset(%(wanted)s::jsonb) AS w(limit_name text, key text, tokens int)
    JOIN rate_limits AS l ON l.name = w.limit_name
),
leased AS (
    INSERT INTO rate_limit_buckets AS b (limit_name, key, tat)
    SELECT limit_name, key, now() + make_interval(secs => %(horizon)s + cost)
    FROM wanted
    WHERE %(horizon)s + cost <= capacity / 2
    ORDER BY limit_name, key
    ON CONFLICT (limit_name, key) DO UPDATE
    SET tat = greatest(b.tat, now() + make_interval(secs => %(horizon)s))
              + (EXCLUDED.tat - now() - make_interval(secs => %(horizon)s))
    WHERE greatest(b.tat, now() + make_interval(secs => %(horizon)s))
          + (EXCLUDED.tat - now() - make_interval(secs => %(horizon)s))
          <= now() + make_interval(secs => (SELECT w.capacity / 2 FROM wanted AS w
                                            WHERE w.limit_name = b.limit_name
                                              AND w.key = b.key))
    RETURNING b.limit_name, b.key
)
SELECT limit_name, key, now() AS start, pg_current_xact_id()::text AS xid FROM leased
"""

CREATE_JOB_LEASED = (
    """
-- name: create_job_leased  (no index: one row inserted)
-- create_job for a job admitted from this process's token leases: born `scheduled` (or
-- `pending` at its own start time) with no bucket touched, and only while every lease holds
-- (LEASE_HOLDS); otherwise nothing is written and the caller books its slots instead.
WITH moved AS (
    INSERT INTO jobs (tenant_id, project_id, type, queue, priority, payload, status,
                      retry_policy, not_before, idempotency_key, request_hash, scheduled_at,
                      dispatched_at, time_limit_seconds, scheduled_for)
    SELECT %(tenant_id)s, %(project_id)s, %(type)s, %(queue)s, %(priority)s,
           %(payload)s::jsonb, %(to_status)s::job_status, %(retry_policy)s::jsonb,
           %(not_before)s, %(idempotency_key)s, %(request_hash)s,
           CASE WHEN %(to_status)s = 'scheduled' THEN now() END,
           CASE WHEN %(to_status)s = 'scheduled' AND %(dispatching)s THEN now() END,
           %(time_limit_seconds)s, %(scheduled_for)s::timestamptz"""
    + LEASE_HOLDS
    + """
    RETURNING *
),
history AS (
    INSERT INTO job_history (job_id, from_status, to_status, actor, reason, attempt, details)
    SELECT moved.id, NULL, moved.status, %(actor)s, %(reason)s, 0, '{}'::jsonb
    FROM moved
    RETURNING id, job_id, from_status, to_status, actor, reason, attempt, details, at
)"""
    + EVENTS_OF_HISTORY
    + """
SELECT * FROM moved
"""
)

LIST_LIMITS = """
-- name: list_limits  (pk_rate_limits; a handful of rows)
SELECT name, scope, job_type, key_path, rate, per, burst, units, units_path, created_at,
       updated_at
FROM rate_limits ORDER BY name
"""

GET_LIMIT = """
-- name: get_limit  (pk_rate_limits)
SELECT name, scope, job_type, key_path, rate, per, burst, units, units_path, created_at,
       updated_at
FROM rate_limits WHERE name = %(name)s
"""

SET_LIMIT = """
-- name: set_limit  (pk_rate_limits)
-- A changed limit keeps its buckets: slots already taken stay as booked, and the new rate and
-- burst apply to every slot taken from now on.
INSERT INTO rate_limits AS l (name, scope, job_type, key_path, rate, per, burst, units,
                              units_path)
VALUES (%(name)s, %(scope)s, %(job_type)s, %(key_path)s, %(rate)s, %(per)s, %(burst)s,
        %(units)s, %(units_path)s)
ON CONFLICT (name) DO UPDATE
SET scope = EXCLUDED.scope, job_type = EXCLUDED.job_type, key_path = EXCLUDED.key_path,
    rate = EXCLUDED.rate, per = EXCLUDED.per, burst = EXCLUDED.burst, units = EXCLUDED.units,
    units_path = EXCLUDED.units_path, updated_at = now()
RETURNING name, scope, job_type, key_path, rate, per, burst, units, units_path, created_at,
          updated_at
"""

DELETE_LIMIT = """
-- name: delete_limit  (pk_rate_limits; its buckets go with it, by their foreign key)
DELETE FROM rate_limits WHERE name = %(name)s RETURNING name
"""

LIMIT_STATUS = f"""
-- name: limit_status  (pk_rate_limits, ix_rate_limit_buckets_tat)
-- Per limit, from its busy buckets only (TAT ahead of now; an idle bucket is a full one):
-- the whole tokens its emptiest bucket has now, the units booked beyond the buckets'
-- capacity (jobs waiting, when each costs one token) and the next admission among them
-- (reckoned in single tokens). Reads as many rows as buckets are busy, whatever the history.
WITH busy AS (
    SELECT l.name, {_SECONDS_PER_TOKEN} AS per_token,
           extract(epoch FROM b.tat - now()) / {_SECONDS_PER_TOKEN} - l.burst AS beyond
    FROM rate_limits AS l
    JOIN rate_limit_buckets AS b ON b.limit_name = l.name AND b.tat > now()
)
SELECT l.name, l.burst,
       coalesce(min(greatest(0, floor(-busy.beyond))) FILTER (WHERE busy.name IS NOT NULL),
                l.burst)::bigint AS tokens,
       coalesce(sum(greatest(0, ceil(busy.beyond))), 0)::bigint AS waiting,
       min(CASE WHEN busy.beyond > 0 THEN now() + make_interval(
               secs => (busy.beyond - ceil(busy.beyond) + 1) * busy.per_token) END)
           AS next_admission
FROM rate_limits AS l LEFT JOIN busy ON busy.name = l.name
GROUP BY l.name, l.burst
ORDER BY l.name
"""

PENDING_TO_PACE = """
-- name: pending_to_pace  (primary key)
-- A page of due pending jobs the promoter is about to admit: what picks their limits and
-- buckets, and how late their slot is.
SELECT id, tenant_id, type, payload, not_before,
       extract(epoch FROM now() - not_before)::float8 AS late_seconds
FROM jobs
WHERE id = ANY(%(ids)s::bigint[]) AND status = 'pending'
ORDER BY not_before, id
"""

RESLOT_PENDING = """
-- name: reslot_pending  (primary key)
-- A late job that booked its slots again waits for the new one; its state stays `pending`.
UPDATE jobs AS j SET not_before = s.slot, updated_at = now()
FROM jsonb_to_recordset(%(slots)s::jsonb) AS s(id bigint, slot timestamptz)
WHERE j.id = s.id AND j.status = 'pending'
"""
